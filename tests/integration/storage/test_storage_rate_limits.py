import threading

import sqlalchemy as sa

from server.storage.rate_limits import SqlCounterStore
from server.storage.tables import rate_limit_counters


def test_counts_per_window_and_reports_the_previous_one(uow):
    store = SqlCounterStore(uow)
    assert store.hit("t", "dispatch", 100) == (1, 0)
    assert store.hit("t", "dispatch", 100) == (2, 0)
    assert store.hit("t", "dispatch", 101) == (1, 2)
    assert store.hit("other", "dispatch", 101) == (1, 0)


def test_old_windows_are_dropped_when_a_new_one_starts(uow):
    store = SqlCounterStore(uow)
    for window in (1, 2, 3, 10):
        store.hit("t", "dispatch", window)
    with uow(write=False) as uow:
        left = uow.connection.execute(
            sa.select(rate_limit_counters.c.window_index).where(rate_limit_counters.c.tenant_id == "t")
        ).scalars()
        assert sorted(left) == [10]


def test_concurrent_hits_are_all_counted(uow):
    store = SqlCounterStore(uow)
    threads = [
        threading.Thread(target=lambda: [store.hit("t", "dispatch", 7) for _ in range(10)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.hit("t", "dispatch", 7) == (41, 0)
