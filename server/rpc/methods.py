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
from reconrouter.exceptions.v1 import exceptions_pb2
from reconrouter.health.v1 import health_pb2

SERVICE_MODULES: tuple[ModuleType, ...] = (exceptions_pb2, health_pb2)


@dataclass(frozen=True)
class HttpBinding:
    verb: str  # GET, POST, PUT, DELETE, PATCH
    path: str  # template such as /v1/exceptions/{exception_id}
    body: str  # "" (no body), "*" or a field name


@dataclass(frozen=True)
class MethodInfo:
    full_name: str  # "/reconrouter.exceptions.v1.ExceptionsService/GetException"
    service: str
    name: str
    required_scope: str  # "" for public RPCs
    http: HttpBinding | None
    request_type: type[Message]
    response_type: type[Message]

    @property
    def mutating(self) -> bool:
        """Every route that is not a GET changes something (API.md §5)."""
        return self.http is None or self.http.verb != "GET"


def _http_binding(method: MethodDescriptor) -> HttpBinding | None:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    kind = rule.WhichOneof("pattern")
    if kind is None or kind == "custom":
        return None
    return HttpBinding(kind.upper(), getattr(rule, kind), rule.body)


def load_methods(modules: tuple[ModuleType, ...] = SERVICE_MODULES) -> dict[str, MethodInfo]:
    table: dict[str, MethodInfo] = {}
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                full_name = f"/{service.full_name}/{method.name}"
                table[full_name] = MethodInfo(
                    full_name=full_name,
                    service=service.full_name,
                    name=method.name,
                    required_scope=method.GetOptions().Extensions[options_pb2.required_scope],
                    http=_http_binding(method),
                    request_type=message_factory.GetMessageClass(method.input_type),
                    response_type=message_factory.GetMessageClass(method.output_type),
                )
    return table


def service_names(modules: tuple[ModuleType, ...] = SERVICE_MODULES) -> list[str]:
    return [s.full_name for m in modules for s in m.DESCRIPTOR.services_by_name.values()]
