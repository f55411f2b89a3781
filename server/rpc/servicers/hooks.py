"""HooksService: the ticket systems' webhooks. The auth interceptor has already checked the
signature over the raw body (proto option signed_hook) and set the hook's tenant."""

from __future__ import annotations

from reconrouter.hooks.v1 import hooks_pb2 as pb
from reconrouter.hooks.v1 import hooks_pb2_grpc

from server.rpc.call_state import principal
from server.services.hooks import HookService


def _receipt(receipt) -> pb.HookReceipt:
    return pb.HookReceipt(status=receipt.status, exception_ids=list(receipt.exception_ids))


def _headers(context) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


class HooksServicer(hooks_pb2_grpc.HooksServiceServicer):
    def __init__(self, hooks: HookService) -> None:
        self._hooks = hooks

    def ReceiveJiraHook(self, request, context):
        return _receipt(self._hooks.receive(principal(), "JIRA", request.body.data, _headers(context)))

    def ReceiveServiceNowHook(self, request, context):
        return _receipt(self._hooks.receive(principal(), "SERVICENOW", request.body.data, _headers(context)))
