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

JIRA_HOOK = "/reconrouter.hooks.v1.HooksService/ReceiveJiraHook"
SERVICENOW_HOOK = "/reconrouter.hooks.v1.HooksService/ReceiveServiceNowHook"

SUCCESS_STATUS: dict[str, Callable[[Any], int]] = {
    DISPATCH: lambda answer: 200 if answer.acknowledged else 202,
    # A hook about a ticket this tenant never dispatched is accepted and ignored (API.md §9).
    JIRA_HOOK: lambda answer: 202 if answer.status == "IGNORED" else 200,
    SERVICENOW_HOOK: lambda answer: 202 if answer.status == "IGNORED" else 200,
}
