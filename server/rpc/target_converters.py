"""Target configuration: proto <-> domain (the targets half of converters.py, kept apart)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from reconrouter.targets.v1 import targets_pb2 as pb

from server.domain.hooks import inbound_path
from server.domain.targets import ALL_FIELDS, PREVIOUS_SECRET, PREVIOUS_SECRET_UNTIL, TargetConfig

# Settings a caller may read back; write-only fields never leave the server.
_READABLE = (
    "base_url",
    "project_key",
    "issue_type",
    "instance_url",
    "table",
    "url",
    "signature_scheme",
    "resolve_transition_id",
    "resolve_close_code",
)


def put_request_to_values(request: pb.PutTargetRequest) -> dict[str, str]:
    """The fields present in the body (proto3 `optional` tells absent from empty)."""
    return {name: getattr(request, name) for name in ALL_FIELDS if request.HasField(name)}


def target_to_proto(config: TargetConfig) -> pb.Target:
    message = pb.Target(
        target_system=config.target.value, configured_secrets=config.configured_secrets, paused=config.paused
    )
    for name in _READABLE:
        value = config.settings.get(name)
        if value:
            setattr(message, name, value)
    if config.inbound_hook_id:
        message.inbound_path = inbound_path(config.target, config.inbound_hook_id)
    if config.generated_secret:
        message.secret = config.generated_secret  # the answer that generated it, and only that one
    for name in ("created_at", "updated_at"):
        when = getattr(config, name)
        if when is not None:
            getattr(message, name).CopyFrom(_timestamp(when))
    until = config.setting(PREVIOUS_SECRET_UNTIL)
    if until and config.secret(PREVIOUS_SECRET):
        message.previous_secret_expires_at.CopyFrom(_timestamp(datetime.fromisoformat(until)))
    return message


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


def targets_to_proto(configs: list[TargetConfig]) -> pb.ListTargetsResponse:
    return pb.ListTargetsResponse(targets=[target_to_proto(c) for c in configs])
