"""Database failures as domain errors, so callers get 503 UNAVAILABLE rather than 500 INTERNAL."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from server.domain.errors import DomainError, Unavailable


def translate_db_error(exc: BaseException) -> DomainError | None:
    if isinstance(exc, OperationalError | PoolTimeout) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return Unavailable("the database is unavailable; retry shortly")
    return None


def make_ping(engine: Engine):
    def ping() -> None:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise translate_db_error(exc) or Unavailable("the database is unavailable") from exc

    return ping
