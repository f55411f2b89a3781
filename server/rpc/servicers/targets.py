"""TargetsService: convert, call one service function, convert back."""

from __future__ import annotations

from reconrouter.targets.v1 import targets_pb2 as pb
from reconrouter.targets.v1 import targets_pb2_grpc

from server.rpc import target_converters as conv
from server.rpc.call_state import principal
from server.services.targets import TargetService


class TargetsServicer(targets_pb2_grpc.TargetsServiceServicer):
    def __init__(self, targets: TargetService) -> None:
        self._targets = targets

    def PutTarget(self, request, context):
        values = conv.put_request_to_values(request)
        return conv.target_to_proto(self._targets.put(principal(), request.target_system, values))

    def GetTarget(self, request, context):
        return conv.target_to_proto(self._targets.get(principal(), request.target_system))

    def ListTargets(self, request, context):
        return conv.targets_to_proto(self._targets.list(principal()))

    def DeleteTarget(self, request, context):
        self._targets.delete(principal(), request.target_system)
        return pb.DeleteTargetResponse()

    def PauseTarget(self, request, context):
        return conv.target_to_proto(self._targets.set_paused(principal(), request.target_system, True))

    def ResumeTarget(self, request, context):
        return conv.target_to_proto(self._targets.set_paused(principal(), request.target_system, False))

    def RotateTargetSecret(self, request, context):
        return conv.target_to_proto(self._targets.rotate_secret(principal(), request.target_system))
