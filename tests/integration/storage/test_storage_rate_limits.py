import threading

import sqlalchemy as sa

from server.storage.rate_limits import SqlCounterStore
from server.storage.tables import rate_limit_counters


def always(current, previous):
    return True


def never(current, previous):
    return False


def test_counts_per_window_and_reports_the_previous_one(uow):
    store = SqlCounterStore(uow)
    assert store.hit("t", "dispatch", 100, always) == (1, 0)
    assert store.hit("t", "dispatch", 100, always) == (2, 0)
    assert store.hit("t", "dispatch", 101, always) == (1, 2)
    assert store.hit("other", "dispatch", 101, always) == (1, 0)


def test_old_windows_are_dropped_when_a_new_one_starts(uow):
    store = SqlCounterStore(uow)
    for window in (1, 2, 3, 10):
        store.hit("t", "dispatch", window, always)
    with uow(write=False) as uow:
        left = uow.connection.execute(
            sa.select(rate_limit_counters.c.window_index).where(rate_limit_counters.c.tenant_id == "t")
        ).scalars()
        assert sorted(left) == [10]


def test_concurrent_hits_are_all_counted(uow):
    store = SqlCounterStore(uow)
    threads = [
        threading.Thread(target=lambda: [store.hit("t", "dispatch", 7, always) for _ in range(10)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.hit("t", "dispatch", 7, always) == (41, 0)


def test_a_refused_call_is_not_counted(uow):
    store = SqlCounterStore(uow)
    assert store.hit("t", "dispatch", 5, always) == (1, 0)
    assert store.hit("t", "dispatch", 5, never) == (2, 0)
    assert store.hit("t", "dispatch", 5, never) == (2, 0)
    assert store.hit("t", "dispatch", 6, never) == (1, 1)
    assert store.hit("t", "dispatch", 6, always) == (1, 1)


def test_concurrent_hits_never_admit_past_the_limit(uow):
    store = SqlCounterStore(uow)
    admitted = []

    def admit(current, previous):
        admitted.append(current <= 25)
        return admitted[-1]

    threads = [
        threading.Thread(target=lambda: [store.hit("t", "dispatch", 8, admit) for _ in range(10)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 25
    assert store.hit("t", "dispatch", 8, never) == (26, 0)
