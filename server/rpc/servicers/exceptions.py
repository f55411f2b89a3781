"""ExceptionsService: convert, call one service function, convert back. Nothing else lives here."""

from __future__ import annotations

from reconrouter.exceptions.v1 import exceptions_pb2 as pb
from reconrouter.exceptions.v1 import exceptions_pb2_grpc

from server.rpc import converters as conv
from server.rpc.call_state import principal
from server.services.dispatch import DispatchService
from server.services.exceptions import ExceptionService


class ExceptionsServicer(exceptions_pb2_grpc.ExceptionsServiceServicer):
    def __init__(self, exceptions: ExceptionService, dispatch: DispatchService) -> None:
        self._exceptions = exceptions
        self._dispatch = dispatch

    def CreateException(self, request, context):
        created = self._exceptions.create(principal(), conv.new_exception_to_domain(request))
        return conv.exception_to_proto(created)

    def BatchCreateExceptions(self, request, context):
        items = [conv.new_exception_to_domain(item) for item in request.exceptions]
        created = self._exceptions.batch_create(principal(), items)
        return pb.BatchCreateExceptionsResponse(exceptions=[conv.exception_to_proto(e) for e in created])

    def ListExceptions(self, request, context):
        page = self._exceptions.list(principal(), conv.list_request_to_domain(request))
        return conv.exception_page_to_proto(page)

    def GetException(self, request, context):
        return conv.exception_to_proto(self._exceptions.get(principal(), request.exception_id))

    def ListExceptionHistory(self, request, context):
        page = self._exceptions.history(principal(), request.exception_id, request.cursor, request.limit)
        return conv.history_page_to_proto(page)

    def DispatchException(self, request, context):
        record = self._dispatch.dispatch(
            principal(), request.exception_id, request.target_system, request.queue
        )
        return conv.dispatch_to_proto(record)

    def BulkDispatchExceptions(self, request, context):
        outcome = self._dispatch.bulk_dispatch(
            principal(), list(request.exception_ids), request.target_system, request.queue
        )
        return conv.bulk_outcome_to_proto(outcome)

    def BulkAssignExceptions(self, request, context):
        outcome = self._exceptions.bulk_assign(principal(), list(request.exception_ids), request.assignee)
        return conv.bulk_outcome_to_proto(outcome)

    def BulkResolveExceptions(self, request, context):
        outcome = self._exceptions.bulk_resolve(
            principal(), list(request.exception_ids), request.resolution, request.reason
        )
        return conv.bulk_outcome_to_proto(outcome)

    def ReceiveCallback(self, request, context):
        self._exceptions.callback(principal(), request.exception_id, conv.callback_to_domain(request))
        return pb.ReceiveCallbackResponse(status="accepted")
