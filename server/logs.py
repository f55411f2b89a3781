"""JSON log lines on stderr; each carries the request id of the call that wrote it."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from server.config import PROJECT_ROOT, Settings
from server.rpc import call_state

_STANDARD = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,  # tells WORKERS apart
        }
        state = call_state.current_or_none()
        if state is not None:
            line["request_id"] = state.request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line and value is not None:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


ACCESS_LOGGER = "reconrouter.access"
# `make run`'s access log when ACCESS_LOG is empty.
LOCAL_ACCESS_LOG = PROJECT_ROOT / "var" / "access.log"


def access_log_destination(settings: Settings, *, local_run: bool = True) -> str:
    """`stderr`, `off` or a file path: ACCESS_LOG, else the default of the command."""
    if settings.access_log:
        return settings.access_log
    return str(LOCAL_ACCESS_LOG) if local_run else "stderr"


def configure(level: str, access_log: str = "stderr") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    access = logging.getLogger(ACCESS_LOGGER)
    access.handlers.clear()
    access.propagate = True
    access.disabled = False
    access.setLevel(logging.NOTSET)
    if access_log.lower() == "off":
        access.disabled = True
    elif access_log.lower() != "stderr":
        path = Path(access_log)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Append mode: the forked workers share the descriptor, each line one O_APPEND write.
        to_file = logging.FileHandler(path, mode="a", encoding="utf-8")
        to_file.setFormatter(JsonFormatter())
        access.addHandler(to_file)
        access.propagate = False
        # Its own destination, so its own level: a quiet terminal (LOG_LEVEL) keeps the file whole.
        access.setLevel(logging.INFO)
    # Alembic narrates every plugin it loads at INFO; operators need only its warnings.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
