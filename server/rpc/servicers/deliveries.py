"""DeliveriesService: convert, call one service function, convert back."""

from __future__ import annotations

from reconrouter.deliveries.v1 import deliveries_pb2 as pb
from reconrouter.deliveries.v1 import deliveries_pb2_grpc

from server.rpc import delivery_converters as conv
from server.rpc.call_state import principal
from server.services.deliveries import DeliveryService


class DeliveriesServicer(deliveries_pb2_grpc.DeliveriesServiceServicer):
    def __init__(self, deliveries: DeliveryService) -> None:
        self._deliveries = deliveries

    def ListExceptionDeliveries(self, request, context):
        found = self._deliveries.for_exception(principal(), request.exception_id)
        return pb.ListExceptionDeliveriesResponse(items=[conv.delivery_to_proto(d) for d in found])

    def ListDeliveries(self, request, context):
        page = self._deliveries.page(
            principal(),
            conv.state_to_domain(request.state),
            request.target_system,
            request.cursor,
            request.limit,
        )
        return conv.delivery_page_to_proto(page)

    def GetDelivery(self, request, context):
        return conv.delivery_to_proto(self._deliveries.get(principal(), request.delivery_id))

    def RetryDelivery(self, request, context):
        return conv.delivery_to_proto(self._deliveries.retry(principal(), request.delivery_id))

    def CancelDelivery(self, request, context):
        return conv.delivery_to_proto(self._deliveries.cancel(principal(), request.delivery_id))

    def BulkRetryDeliveries(self, request, context):
        return conv.bulk_retry_to_proto(self._deliveries.bulk_retry(principal(), list(request.delivery_ids)))
