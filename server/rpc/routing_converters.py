"""Routing rules: proto <-> domain (the routing half of converters.py, kept apart)."""

from __future__ import annotations

from reconrouter.exceptions.v1 import exceptions_pb2 as epb
from reconrouter.routing.v1 import routing_pb2 as pb

from server.domain.routing import RoutingRule, RuleAction, RuleInput
from server.domain.sla import SlaPolicy
from server.rpc.converters import timestamp
from server.services.routing import Evaluation


def _opt(message, name: str) -> str | None:
    return getattr(message, name) if message.HasField(name) else None


def rule_input_to_domain(request: pb.CreateRoutingRuleRequest | pb.UpdateRoutingRuleRequest) -> RuleInput:
    c = request.conditions
    a = request.action
    return RuleInput(
        name=request.name,
        priority=request.priority if request.HasField("priority") else None,
        enabled=request.enabled if request.HasField("enabled") else True,
        # SEVERITY_UNSPECIFIED in the list is reported as an unknown severity.
        severities=tuple(epb.Severity.Name(s) for s in c.severities),
        min_amount=_opt(c, "min_amount"),
        currency=_opt(c, "currency"),
        min_age_hours=c.min_age_hours if c.HasField("min_age_hours") else None,
        sources=tuple(c.sources),
        reason_contains=_opt(c, "reason_contains"),
        metadata=dict(c.metadata),
        target_system=a.target_system,
        queue=_opt(a, "queue"),
        assignee=_opt(a, "assignee"),
        severity=epb.Severity.Name(a.severity) if a.HasField("severity") else None,
        severity_reason=_opt(a, "severity_reason"),
        auto_dispatch=request.auto_dispatch,
    )


def action_to_proto(a: RuleAction) -> pb.RuleAction:
    message = pb.RuleAction(
        target_system=a.target.value, severity=a.severity.name if a.severity is not None else None
    )
    if a.queue:
        message.queue = a.queue
    if a.assignee is not None:
        message.assignee = a.assignee
    if a.severity is not None:
        message.severity_reason = a.severity_reason or ""
    return message


def rule_to_proto(rule: RoutingRule) -> pb.RoutingRule:
    c = rule.conditions
    conditions = pb.RuleConditions(
        severities=[s.name for s in sorted(c.severities)],
        sources=list(c.sources),
        metadata=dict(c.metadata),
    )
    if c.min_amount is not None:
        conditions.min_amount = str(c.min_amount)
        conditions.currency = c.currency or ""
    if c.min_age_hours is not None:
        conditions.min_age_hours = c.min_age_hours
    if c.reason_contains:
        conditions.reason_contains = c.reason_contains
    return pb.RoutingRule(
        id=rule.id,
        name=rule.name,
        priority=rule.priority,
        enabled=rule.enabled,
        conditions=conditions,
        action=action_to_proto(rule.action),
        auto_dispatch=rule.auto_dispatch,
        created_at=timestamp(rule.created_at),
        updated_at=timestamp(rule.updated_at),
    )


def rules_to_proto(rules: list[RoutingRule]) -> pb.ListRoutingRulesResponse:
    return pb.ListRoutingRulesResponse(items=[rule_to_proto(r) for r in rules])


def evaluation_to_proto(evaluation: Evaluation) -> pb.EvaluateRoutingRulesResponse:
    message = pb.EvaluateRoutingRulesResponse(
        rules=[
            pb.RuleEvaluation(
                rule_id=r.rule.id,
                name=r.rule.name,
                priority=r.rule.priority,
                matched=r.matched,
                failed_conditions=list(r.failed),
            )
            for r in evaluation.rules
        ]
    )
    if evaluation.matched is not None:
        message.matched_rule_id = evaluation.matched.id
        message.action.CopyFrom(action_to_proto(evaluation.matched.action))
    return message


def policy_to_proto(policy: SlaPolicy) -> pb.SlaPolicy:
    message = pb.SlaPolicy(
        tiers=[
            pb.SlaTier(severity=s.name, due_in_hours=policy.tiers[s])
            for s in sorted(policy.tiers, reverse=True)
        ]
    )
    if policy.escalation_target is not None:
        message.escalation.target_system = policy.escalation_target.value
        if policy.escalation_queue:
            message.escalation.queue = policy.escalation_queue
    if policy.updated_at is not None:
        message.updated_at.CopyFrom(timestamp(policy.updated_at))
    return message


def put_policy_to_domain(request: pb.PutSlaPolicyRequest) -> tuple[list[tuple[str, int]], str | None, str]:
    """(tiers as (severity name, hours), escalation target or None, escalation queue)."""
    tiers = [(epb.Severity.Name(t.severity), t.due_in_hours) for t in request.tiers]
    if not request.HasField("escalation"):
        return tiers, None, ""
    return tiers, request.escalation.target_system, request.escalation.queue
