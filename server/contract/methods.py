"""Every RPC of the contract, read once from the generated descriptors: its scope, its REST binding
and its message classes. Auth, idempotency, logging and the /v1/bulk route table all use this one
table, so nothing repeats the contract by hand."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from google.api import annotations_pb2, http_pb2  # noqa: F401 - registers google.api.http
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

OPTIONS_PACKAGE = "reconrouter.api.v1"
PACKAGE_PREFIX = "reconrouter."


def service_modules() -> tuple[ModuleType, ...]:
    """The generated modules of every service the server runs. Imported on demand: `make gen` reads
    the contract from the descriptor set it writes, and must work while gen/ is stale or absent."""
    from reconrouter.api.v1 import options_pb2  # noqa: F401 - registers the method options
    from reconrouter.bulk.v1 import bulk_pb2
    from reconrouter.deliveries.v1 import deliveries_pb2
    from reconrouter.exceptions.v1 import exceptions_pb2
    from reconrouter.health.v1 import health_pb2
    from reconrouter.hooks.v1 import hooks_pb2
    from reconrouter.meta.v1 import meta_pb2
    from reconrouter.routing.v1 import routing_pb2
    from reconrouter.targets.v1 import targets_pb2

    return (
        exceptions_pb2,
        deliveries_pb2,
        health_pb2,
        targets_pb2,
        bulk_pb2,
        meta_pb2,
        hooks_pb2,
        routing_pb2,
    )


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
    # The method's descriptor (its messages' fields, for the OpenAPI generator and the transcoder).
    descriptor: MethodDescriptor | None = None
    # (reconrouter.api.v1.signed_hook): a target system's webhook, authenticated by the signature over
    # its raw body instead of a token; the system's name (JIRA, SERVICENOW).
    signed_hook: str = ""
    # Response fields marked (reconrouter.api.v1.shown_once): in this answer only, never stored.
    shown_once_fields: tuple[str, ...] = ()

    @property
    def bindings(self) -> tuple[HttpBinding, ...]:
        """Every REST route of this RPC: the main binding first, then additional_bindings."""
        return ((self.http,) if self.http is not None else ()) + self.additional_http

    @property
    def public(self) -> bool:
        """Callable without a token or a signature: no scope, no token_required, not a signed hook
        (health only)."""
        return not self.required_scope and not self.token_required and not self.signed_hook

    @property
    def mutating(self) -> bool:
        """Every route that is not a GET changes something (API.md §5)."""
        return self.http is None or self.http.verb != "GET"


def _rule_binding(rule: http_pb2.HttpRule) -> HttpBinding | None:
    kind = rule.WhichOneof("pattern")
    if kind is None or kind == "custom":
        return None
    return HttpBinding(kind.upper(), getattr(rule, kind), rule.body, rule.response_body)


class _OptionReader:
    """Reads a method's options through the pool its descriptor lives in. Options in a descriptor set
    loaded at run time are unparsed extensions there, so they are re-read with that pool's own
    MethodOptions class; for the generated modules' pool this is the same class and extensions."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._options_class = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("google.protobuf.MethodOptions")
        )
        self._http: _ExtensionFieldDescriptor[Message, http_pb2.HttpRule] = _extension(
            pool, "google.api.http"
        )
        self._field_options_class = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("google.protobuf.FieldOptions")
        )
        self._pool = pool

    def shown_once_fields(self, message: Descriptor) -> tuple[str, ...]:
        """The fields of `message` marked (reconrouter.api.v1.shown_once)."""
        try:
            extension = _extension(self._pool, f"{OPTIONS_PACKAGE}.shown_once")
        except KeyError:
            return ()
        marked = []
        for field in message.fields:
            options = self._field_options_class.FromString(field.GetOptions().SerializeToString())
            if options.Extensions[extension]:
                marked.append(field.name)
        return tuple(marked)

    def read(self, method: MethodDescriptor) -> tuple[Message, list[http_pb2.HttpRule]]:
        options = self._options_class.FromString(method.GetOptions().SerializeToString())
        if not options.HasExtension(self._http):
            return options, []
        rule = options.Extensions[self._http]
        return options, [rule, *rule.additional_bindings]

    def option(self, options: Message, name: str, default: Any) -> Any:
        try:
            extension = _extension(self._pool, f"{OPTIONS_PACKAGE}.{name}")
        except KeyError:
            return default
        return options.Extensions[extension]


def _extension(pool: descriptor_pool.DescriptorPool, name: str) -> _ExtensionFieldDescriptor[Message, Any]:
    """An extension of `pool`, as the key of a message's Extensions."""
    # cast: the stubs key Extensions by the typed descriptors generated modules declare; one found
    # in a pool at run time is a plain FieldDescriptor (the same object).
    return cast("_ExtensionFieldDescriptor[Message, Any]", pool.FindExtensionByName(name))


def read_methods(
    pool: descriptor_pool.DescriptorPool, services: Iterable[ServiceDescriptor]
) -> dict[str, MethodInfo]:
    """full method name -> MethodInfo for every method of `services` (descriptors of `pool`)."""
    reader = _OptionReader(pool)
    table: dict[str, MethodInfo] = {}
    for service in services:
        for method in service.methods:
            options, rules = reader.read(method)
            full_name = f"/{service.full_name}/{method.name}"
            table[full_name] = MethodInfo(
                full_name=full_name,
                service=service.full_name,
                name=method.name,
                required_scope=reader.option(options, "required_scope", ""),
                rate_limit=reader.option(options, "rate_limit", ""),
                http=_rule_binding(rules[0]) if rules else None,
                request_type=message_factory.GetMessageClass(method.input_type),
                response_type=message_factory.GetMessageClass(method.output_type),
                token_required=reader.option(options, "token_required", False),
                additional_http=tuple(b for b in map(_rule_binding, rules[1:]) if b is not None),
                idempotency_key_required=reader.option(options, "idempotency_key_required", False),
                descriptor=method,
                signed_hook=reader.option(options, "signed_hook", ""),
                shown_once_fields=reader.shown_once_fields(method.output_type),
            )
    return table


def load_methods(modules: tuple[ModuleType, ...] | None = None) -> dict[str, MethodInfo]:
    """The contract the server runs: the generated modules' descriptors."""
    services = [s for m in modules or service_modules() for s in m.DESCRIPTOR.services_by_name.values()]
    return read_methods(descriptor_pool.Default(), services)


def load_descriptor_set(
    data: bytes,
) -> tuple[descriptor_pb2.FileDescriptorSet, descriptor_pool.DescriptorPool]:
    """A descriptor set as `make gen` writes it (gen/reconrouter.pb), in a pool of its own."""
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return files, pool


def methods_of_descriptor_set(
    files: descriptor_pb2.FileDescriptorSet, pool: descriptor_pool.DescriptorPool
) -> dict[str, MethodInfo]:
    """The contract as a descriptor set states it (the OpenAPI generator reads the set `make gen` has
    just written, not the modules a running process imported): our packages' services, by file name."""
    services = [
        pool.FindServiceByName(f"{file.package}.{service.name}")
        for file in sorted(files.file, key=lambda f: f.name)
        if file.package.startswith(PACKAGE_PREFIX)
        for service in file.service
    ]
    return read_methods(pool, services)


def service_names(modules: tuple[ModuleType, ...] | None = None) -> list[str]:
    return [s.full_name for m in modules or service_modules() for s in m.DESCRIPTOR.services_by_name.values()]
