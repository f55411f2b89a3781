"""`python -m bench.no_idempotency_server serve`: the normal server minus the idempotency interceptor.

Only the benchmark uses it, as the baseline for what the interceptor costs a call without a key.
"""

import sys

from server.__main__ import main
from server.bootstrap import App
from server.rpc.interceptors.idempotency import IdempotencyInterceptor

_with_idempotency = App.interceptors


def _without_idempotency(self: App) -> list:
    return [i for i in _with_idempotency(self) if not isinstance(i, IdempotencyInterceptor)]


App.interceptors = _without_idempotency  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
