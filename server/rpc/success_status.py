"""HTTP statuses other than 200 for successful answers, by RPC, decided from the answer itself so a
replayed answer (idempotency) gets the same status as the first (API.md §5).

A single dispatch whose delivery is still being retried answers 202 Accepted (API.md §7). gRPC
callers get OK either way; REST callers get the status through the x-http-status header, which
Envoy's Lua filter turns into :status (envoy/envoy.yaml.tmpl), as it does for errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DISPATCH = "/reconrouter.exceptions.v1.ExceptionsService/DispatchException"

SUCCESS_STATUS: dict[str, Callable[[Any], int]] = {
    DISPATCH: lambda answer: 200 if answer.acknowledged else 202,
}
