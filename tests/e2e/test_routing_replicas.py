"""Routing rules across replicas on the machine's PostgreSQL: each replica keeps the rules in memory,
and a change made through one is used by the other at its next call (the rules generation)."""

from __future__ import annotations

import os

import grpc
import pytest
from reconrouter.exceptions.v1 import exceptions_pb2, exceptions_pb2_grpc
from reconrouter.routing.v1 import routing_pb2, routing_pb2_grpc

from server.domain.auth import SCOPES
from tests.support.cluster import Cluster
from tests.support.databases import ENV_VAR, fresh_postgres_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get(ENV_VAR), reason=f"{ENV_VAR} is not set"),
]


@pytest.fixture
def cluster(tmp_path):
    with fresh_postgres_url(os.environ[ENV_VAR]) as url, Cluster(url, 2, work_dir=tmp_path) as running:
        yield running


def test_a_rule_change_on_one_replica_is_seen_by_the_other(cluster):
    token = cluster.create_token("replicas", list(SCOPES))
    metadata = (("authorization", f"Bearer {token}"),)
    channels = [grpc.insecure_channel(r.grpc_target) for r in cluster.replicas]
    try:
        rules = [routing_pb2_grpc.RoutingRulesServiceStub(c) for c in channels]
        exceptions = [exceptions_pb2_grpc.ExceptionsServiceStub(c) for c in channels]
        created = exceptions[0].CreateException(
            exceptions_pb2.CreateExceptionRequest(transaction_id="r-1", source="bank"), metadata=metadata
        )

        def evaluate(replica: int) -> routing_pb2.EvaluateRoutingRulesResponse:
            request = routing_pb2.EvaluateRoutingRulesRequest(exception_id=created.id)
            return rules[replica].EvaluateRoutingRules(request, metadata=metadata)

        # Both replicas cache "no rules" first.
        assert not evaluate(0).HasField("matched_rule_id") and not evaluate(1).HasField("matched_rule_id")
        rule = rules[0].CreateRoutingRule(
            routing_pb2.CreateRoutingRuleRequest(
                name="bank",
                priority=1,
                conditions=routing_pb2.RuleConditions(sources=["bank"]),
                action=routing_pb2.RuleAction(target_system="MANUAL", queue="desk"),
            ),
            metadata=metadata,
        )
        assert evaluate(1).matched_rule_id == rule.id
        routed = exceptions[1].DispatchException(
            exceptions_pb2.DispatchExceptionRequest(exception_id=created.id), metadata=metadata
        )
        assert (routed.target_system, routed.queue) == ("MANUAL", "desk")
        # Disabled through the second replica: the first stops using it.
        rules[1].UpdateRoutingRule(
            routing_pb2.UpdateRoutingRuleRequest(
                rule_id=rule.id,
                name="bank",
                priority=1,
                enabled=False,
                conditions=routing_pb2.RuleConditions(sources=["bank"]),
                action=routing_pb2.RuleAction(target_system="MANUAL", queue="desk"),
            ),
            metadata=metadata,
        )
        answer = evaluate(0)
        assert not answer.HasField("matched_rule_id")
        assert list(answer.rules[0].failed_conditions) == ["enabled"]
        second = exceptions[0].CreateException(
            exceptions_pb2.CreateExceptionRequest(transaction_id="r-2", source="bank"), metadata=metadata
        )
        with pytest.raises(grpc.RpcError) as caught:
            exceptions[0].DispatchException(
                exceptions_pb2.DispatchExceptionRequest(exception_id=second.id), metadata=metadata
            )
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "no routing rule" in (caught.value.details() or "")
    finally:
        for c in channels:
            c.close()
