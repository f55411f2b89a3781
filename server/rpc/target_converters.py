"""Target configuration: proto <-> domain (the targets half of converters.py, kept apart)."""

from __future__ import annotations

from datetime import UTC

from google.protobuf import timestamp_pb2
from reconrouter.targets.v1 import targets_pb2 as pb

from server.domain.targets import ALL_FIELDS, TargetConfig

# Settings a caller may read back; write-only fields never leave the server.
_READABLE = ("base_url", "project_key", "issue_type", "instance_url", "table", "url")


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
    for name in ("created_at", "updated_at"):
        when = getattr(config, name)
        if when is not None:
            ts = timestamp_pb2.Timestamp()
            ts.FromDatetime(when.astimezone(UTC))
            getattr(message, name).CopyFrom(ts)
    return message


def targets_to_proto(configs: list[TargetConfig]) -> pb.ListTargetsResponse:
    return pb.ListTargetsResponse(targets=[target_to_proto(c) for c in configs])
