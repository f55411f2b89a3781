"""Where each sub-request's writes live (see runner.py): a SAVEPOINT when the batch runs inside a
transaction, nothing otherwise."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol


class _Outer(Protocol):
    write: bool


class NestingUnitOfWorkFactory(Protocol):
    """What server/storage/uow.py's SqlUnitOfWorkFactory offers: `outer()` nested inside an active
    outer block is a SAVEPOINT of its transaction."""

    def current(self) -> _Outer | None: ...

    def outer(self, *, write: bool = True) -> AbstractContextManager[Any]: ...


def savepoint_per_request(uow: NestingUnitOfWorkFactory) -> Callable[[], AbstractContextManager[Any]]:
    def isolation() -> AbstractContextManager[Any]:
        enclosing = uow.current()
        if enclosing is None:
            # No batch transaction: the sub-request owns its transactions, like the direct call.
            return nullcontext()
        return uow.outer(write=enclosing.write)

    return isolation
