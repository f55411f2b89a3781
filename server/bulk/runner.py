"""Runs a validated batch: in order, in process, each sub-request through the server's own
interceptor chain (request id + access log, errors, auth, rate limit, idempotency), as its caller.

- A failing sub-request does not stop the rest, unless halt_on_error: then the rest answer 424.
- A sub-request whose references point to a failed (or not yet run) one answers 424 unrun.
- The time budget starts with the first sub-request; one not started when it is spent answers 504.
  A started one always finishes, so the first one always runs.
- Transactions: without an enclosing transaction each sub-request commits on its own, exactly like
  the direct call. When the batch itself runs in one (the outer call carries an idempotency key, so
  the stored batch response commits with all its writes), each sub-request runs in a SAVEPOINT of
  it: a failure rolls back its own writes only, and later sub-requests see earlier writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import grpc
from reconrouter.bulk.v1 import bulk_pb2

from server.bulk import references as refs
from server.bulk.context import SubRequestContext
from server.bulk.envelope import PlannedRequest, plan_batch
from server.bulk.results import (
    SubResult,
    aborted,
    envoy_refused,
    internal,
    not_run,
    succeeded,
    too_large,
    unserved,
)
from server.bulk.transcode import TranscodeError, build_request
from server.contract.http import REQUEST_ID
from server.contract.routes import RouteTable
from server.domain.auth import Principal
from server.rpc import call_state
from server.rpc.handlers import InProcessHandlers
from server.rpc.recording_context import CallAborted

log = logging.getLogger("reconrouter.bulk")
_MAX_REQUEST_ID = 1024  # what RequestIdInterceptor accepts
_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
_HALTED = "not run: an earlier request failed and halt_on_error is set"


@dataclass(frozen=True)
class BulkLimits:
    max_requests: int = 100
    time_budget_seconds: float = 30.0
    # The JSON answer's size, counted while it is built (BULK_MAX_RESPONSE_BYTES): an item whose
    # answer would take the batch over it is left out with RESPONSE_TOO_LARGE.
    max_response_bytes: int = 4 * 1024 * 1024
    # gRPC's send limit (4 x MAX_BODY_BYTES): an answer above it is refused with ErrorInfo (never
    # grpc's bare RESOURCE_EXHAUSTED). The budget above keeps answers under it.
    max_message_bytes: int = 16 * 1024 * 1024


# Returns the context each sub-request runs in (a SAVEPOINT, or nothing); see isolation.py.
Isolation = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class OuterCall:
    """What sub-requests inherit from the /v1/bulk call."""

    principal: Principal
    request_id: str
    deadline: float | None  # time.monotonic() value


class BulkRunner:
    def __init__(
        self,
        routes: RouteTable,
        limits: BulkLimits,
        isolation: Isolation = nullcontext,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self._observe = observe  # each sub-request's HTTP status, for metrics
        self._routes = routes
        self._limits = limits
        self._isolation = isolation
        self._clock = clock
        self._handlers = InProcessHandlers()

    @property
    def limits(self) -> BulkLimits:
        return self._limits

    def bind(self, handlers: InProcessHandlers) -> None:
        """The intercepted handlers, known only once every servicer (this one included) exists."""
        self._handlers = handlers

    def run(
        self, request: bulk_pb2.BatchRequest, outer: OuterCall, *, compact: bool = False
    ) -> list[SubResult]:
        """The results in request order, each with its JSON element encoded (`SubResult.encoded`).

        The answer is budgeted while it is built: each result is encoded as soon as it exists, and one
        that would take the total over max_response_bytes is replaced by a RESPONSE_TOO_LARGE failure
        (the rest still run). With `compact` (the JSON route, which needs only the encoded elements)
        the decoded contents and messages are dropped at once, except those a later reference needs.
        """
        planned = plan_batch(request, self._routes, self._limits.max_requests)  # 400, nothing ran
        budget = self._limits.time_budget_seconds
        referenced = {reference.target for item in planned for reference in item.references}
        spent = 2  # the brackets of the array
        results: list[SubResult] = []
        done: dict[str, SubResult] = {}  # by sub-request id
        deadline: float | None = None
        halted = False
        for item in planned:
            now = self._clock()
            if deadline is None:
                # The budget starts with the first sub-request, which therefore always runs; past
                # the outer call's own deadline its caller has stopped waiting anyway.
                deadline = now + budget if outer.deadline is None else min(now + budget, outer.deadline)
                result = self._run_one(item, done, outer, deadline)
            elif halted:
                result = not_run(item.id, 424, _PRECONDITION, "BATCH_HALTED", _HALTED)
            elif now >= deadline:
                message = f"not run: the batch's time budget of {budget:g} s ran out"
                result = not_run(
                    item.id, 504, grpc.StatusCode.DEADLINE_EXCEEDED, "TIME_BUDGET_EXCEEDED", message
                )
            else:
                result = self._run_one(item, done, outer, deadline)
            size = len(result.encode()) + (1 if results else 0)  # and its comma
            if spent + size > self._limits.max_response_bytes:
                result = too_large(item.id, result, size, self._limits.max_response_bytes)
                size = len(result.encode()) + (1 if results else 0)
            spent += size
            if compact and item.id not in referenced:
                result.compact()
            results.append(result)
            if self._observe is not None:
                self._observe(result.status)
            if item.id:
                done[item.id] = result
            halted = halted or (request.halt_on_error and not result.ok)
        return results

    def _run_one(
        self, item: PlannedRequest, done: dict[str, SubResult], outer: OuterCall, deadline: float
    ) -> SubResult:
        for reference in item.references:
            target = done.get(reference.target)
            if target is None or not target.ok:
                why = "has not run yet" if target is None else f"failed with status {target.status}"
                message = f"not run: {reference.text} refers to '{reference.target}', which {why}"
                return not_run(item.id, 424, _PRECONDITION, "DEPENDENCY_FAILED", message)
        try:
            path, match, query, body = self._substituted(item, done)
        except refs.Unresolvable as exc:
            return not_run(item.id, 400, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REFERENCE", str(exc))
        request_id = _sub_request_id(outer.request_id, item.index)
        if match is None:
            # Only after a substitution (the plan resolved every url): Envoy's answer for no route,
            # 405 with Allow when the path has routes for other methods (its Lua filter).
            allowed = self._routes.methods_for(path)
            if allowed:
                allow = ", ".join(sorted(allowed))
                message = f"method {item.method} is not allowed here; allowed: {allow}"
                unimplemented = grpc.StatusCode.UNIMPLEMENTED
                return envoy_refused(
                    item.id, 405, unimplemented, "METHOD_NOT_ALLOWED", message, request_id, allow=allow
                )
            message = f"Could not resolve {path} to a method."
            return envoy_refused(item.id, 404, grpc.StatusCode.NOT_FOUND, "NOT_FOUND", message, request_id)
        try:
            request = build_request(match, query, body, has_body=item.has_body)
        except TranscodeError as exc:
            invalid = grpc.StatusCode.INVALID_ARGUMENT
            return envoy_refused(item.id, 400, invalid, "INVALID_ARGUMENT", str(exc), request_id)
        behaviour = self._handlers.get(match.route.method.full_name)
        if behaviour is None:
            return unserved(item.id, request_id)
        context = SubRequestContext(((REQUEST_ID, request_id), *item.headers), deadline)
        try:
            with self._isolation(), call_state.nested_calls_as(outer.principal):
                response = behaviour(request, context)
                if context.code not in (None, grpc.StatusCode.OK):
                    raise CallAborted(context.details)  # set_code() without abort()
        except CallAborted:
            return aborted(item.id, context)
        except Exception:
            # The error interceptor turns every handler failure into an abort, so this is the
            # savepoint or something else outside the chain. Logged, never shown.
            log.exception("sub-request %d of a bulk call failed outside the interceptors", item.index)
            return internal(item.id, request_id)
        return succeeded(item.id, context, response, match.route.binding.response_body)

    def _substituted(self, item: PlannedRequest, done: dict[str, SubResult]):
        """(path, route match, query, body) with every reference replaced by its value."""
        if not item.references:
            return item.path, item.match, item.query, item.body

        def lookup(reference: refs.Reference) -> Any:
            return refs.resolve(reference, done[reference.target].contents)

        path = refs.substitute_url(item.path, lookup)
        query = refs.substitute_url(item.query, lookup)
        body = refs.substitute_json(item.body, lookup)
        return path, self._routes.resolve(item.method, path), query, body


def _sub_request_id(outer: str, index: int) -> str:
    """`<outer>:<index>`, so a sub-request's log lines lead to its batch; shortened to stay within
    the length the request-id interceptor accepts (it would otherwise make up a fresh id)."""
    suffix = f":{index}"
    return outer[: _MAX_REQUEST_ID - len(suffix)] + suffix
