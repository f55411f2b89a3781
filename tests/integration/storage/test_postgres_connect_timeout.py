"""A PostgreSQL address that accepts the TCP connection but never answers (a hung server, a network
that drops the replies) fails the connection within the connect timeout instead of holding the
calling thread for as long as TCP allows. No PostgreSQL server is needed: a silent listener is one."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from server.storage import engine as engines


@pytest.fixture
def silent_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshake; nothing ever reads or answers
        yield listener.getsockname()[1]


@pytest.mark.timeout(60)  # without a connect timeout libpq would wait here until this fails the test
def test_a_silent_server_is_an_error_within_the_connect_timeout(monkeypatch, silent_port):
    monkeypatch.setattr(engines, "POSTGRES_CONNECT_TIMEOUT_SECONDS", 1)
    engine = engines.make_engine(f"postgresql+psycopg://app@127.0.0.1:{silent_port}/app", pool_size=1)
    with pytest.raises(sa.exc.OperationalError, match="timeout"):
        engine.connect()
    engine.dispose()


@pytest.mark.timeout(60)
def test_a_connect_timeout_in_the_url_wins(monkeypatch, silent_port):
    monkeypatch.setattr(engines, "POSTGRES_CONNECT_TIMEOUT_SECONDS", 3600)
    url = f"postgresql+psycopg://app@127.0.0.1:{silent_port}/app?connect_timeout=1"
    engine = engines.make_engine(url, pool_size=1)
    with pytest.raises(sa.exc.OperationalError, match="timeout"):
        engine.connect()
    engine.dispose()
