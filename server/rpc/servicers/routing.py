"""RoutingRulesService: convert, call one service function, convert back."""

from __future__ import annotations

from reconrouter.routing.v1 import routing_pb2 as pb
from reconrouter.routing.v1 import routing_pb2_grpc

from server.rpc import routing_converters as conv
from server.rpc.call_state import principal
from server.services.routing import RoutingService
from server.services.sla import SlaService


class RoutingRulesServicer(routing_pb2_grpc.RoutingRulesServiceServicer):
    def __init__(self, routing: RoutingService) -> None:
        self._routing = routing

    def CreateRoutingRule(self, request, context):
        return conv.rule_to_proto(self._routing.create(principal(), conv.rule_input_to_domain(request)))

    def ListRoutingRules(self, request, context):
        return conv.rules_to_proto(self._routing.list(principal()))

    def GetRoutingRule(self, request, context):
        return conv.rule_to_proto(self._routing.get(principal(), request.rule_id))

    def UpdateRoutingRule(self, request, context):
        rule = self._routing.replace(principal(), request.rule_id, conv.rule_input_to_domain(request))
        return conv.rule_to_proto(rule)

    def DeleteRoutingRule(self, request, context):
        self._routing.delete(principal(), request.rule_id)
        return pb.DeleteRoutingRuleResponse()

    def EvaluateRoutingRules(self, request, context):
        return conv.evaluation_to_proto(self._routing.evaluate(principal(), request.exception_id))


class SlaPolicyServicer(routing_pb2_grpc.SlaPolicyServiceServicer):
    def __init__(self, sla: SlaService) -> None:
        self._sla = sla

    def GetSlaPolicy(self, request, context):
        return conv.policy_to_proto(self._sla.get(principal()))

    def PutSlaPolicy(self, request, context):
        return conv.policy_to_proto(self._sla.put(principal(), *conv.put_policy_to_domain(request)))
