"""Every RPC of the contract, read once from the generated descriptors: its scope, its REST binding
and its message classes. Auth, idempotency, logging and the /v1/bulk route table all use this one
table, so nothing repeats the contract by hand."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from reconrouter.api.v1 import options_pb2
from reconrouter.bulk.v1 import bulk_pb2
from reconrouter.exceptions.v1 import exceptions_pb2
from reconrouter.health.v1 import health_pb2
from reconrouter.meta.v1 import meta_pb2
from reconrouter.targets.v1 import targets_pb2

SERVICE_MODULES: tuple[ModuleType, ...] = (exceptions_pb2, health_pb2, targets_pb2, bulk_pb2, meta_pb2)


@dataclass(frozen=True)
class HttpBinding:
    verb: str  # GET, POST, PUT, DELETE, PATCH
    path: str  # template such as /v1/exceptions/{exception_id}
    body: str  # "" (no body), "*" or a field name
    response_body: str = ""  # "" (the whole response) or the response field that is the body


@dataclass(frozen=True)
class MethodInfo:
    full_name: str  # "/reconrouter.exceptions.v1.ExceptionsService/GetException"
    service: str
    name: str
    required_scope: str  # "" for public RPCs
    rate_limit: str  # the per-tenant limit it counts against, "" for none
    http: HttpBinding | None
    request_type: type[Message]
    response_type: type[Message]
    # (reconrouter.api.v1.token_required): a valid token but no particular scope (POST /v1/bulk).
    token_required: bool = False
    # google.api.http additional_bindings: more REST routes to the same RPC.
    additional_http: tuple[HttpBinding, ...] = ()
    # (reconrouter.api.v1.idempotency_key_required): calls without a key are refused.
    idempotency_key_required: bool = False

    @property
    def public(self) -> bool:
        """Callable without a token: no scope and no token_required (health only)."""
        return not self.required_scope and not self.token_required

    @property
    def mutating(self) -> bool:
        """Every route that is not a GET changes something (API.md §5)."""
        return self.http is None or self.http.verb != "GET"


def _rule_binding(rule: http_pb2.HttpRule) -> HttpBinding | None:
    kind = rule.WhichOneof("pattern")
    if kind is None or kind == "custom":
        return None
    return HttpBinding(kind.upper(), getattr(rule, kind), rule.body, rule.response_body)


def _http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    return options.Extensions[annotations_pb2.http]


def _http_binding(method: MethodDescriptor) -> HttpBinding | None:
    rule = _http_rule(method)
    return None if rule is None else _rule_binding(rule)


def _additional_bindings(method: MethodDescriptor) -> tuple[HttpBinding, ...]:
    rule = _http_rule(method)
    found = [] if rule is None else [_rule_binding(extra) for extra in rule.additional_bindings]
    return tuple(b for b in found if b is not None)


def load_methods(modules: tuple[ModuleType, ...] = SERVICE_MODULES) -> dict[str, MethodInfo]:
    table: dict[str, MethodInfo] = {}
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                full_name = f"/{service.full_name}/{method.name}"
                options = method.GetOptions().Extensions
                table[full_name] = MethodInfo(
                    full_name=full_name,
                    service=service.full_name,
                    name=method.name,
                    required_scope=options[options_pb2.required_scope],
                    rate_limit=options[options_pb2.rate_limit],
                    http=_http_binding(method),
                    request_type=message_factory.GetMessageClass(method.input_type),
                    response_type=message_factory.GetMessageClass(method.output_type),
                    token_required=options[options_pb2.token_required],
                    additional_http=_additional_bindings(method),
                    idempotency_key_required=options[options_pb2.idempotency_key_required],
                )
    return table


def service_names(modules: tuple[ModuleType, ...] = SERVICE_MODULES) -> list[str]:
    return [s.full_name for m in modules for s in m.DESCRIPTOR.services_by_name.values()]
