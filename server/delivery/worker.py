"""The delivery workers of one process (API.md §7; docs/delivery.md).

One scheduler thread claims due deliveries with a lease and hands each to a pool of
DELIVERY_CONCURRENCY attempt threads, never more at once than the bulkheads allow: per target host
(DELIVERY_MAX_PER_HOST) and per tenant (DELIVERY_MAX_PER_TENANT), so a slow or dead target holds
at most its host's share of the threads and one tenant cannot take them all. The request threads
never call a target and no attempt runs inside a transaction: an attempt reads what it needs, calls
the target under a total deadline (DELIVERY_ATTEMPT_TIMEOUT), then records the outcome in a short
transaction of its own, which it may do only while it still holds the lease.

The scheduler wakes when a dispatch in this process records a delivery (wake()), when an attempt
finishes, and otherwise every DELIVERY_POLL_SECONDS to pick up what other replicas recorded,
retries that came due and leases that expired.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from server.connectors.deadline import attempt_deadline
from server.delivery.outcomes import outcome_of
from server.delivery.schedule import RetrySchedule
from server.domain.delivery import (
    Delivery,
    DeliveryState,
)
from server.domain.dispatch import (
    ResolutionRequest,
    TargetDown,
    TargetSystem,
    TicketRef,
    TicketRequest,
    external_marker,
)
from server.domain.errors import DomainError
from server.domain.exceptions import ReconException, Status
from server.domain.ports import ConnectorFactory, UnitOfWork, UnitOfWorkFactory
from server.domain.targets import TargetConfig
from server.services.clock import Clock, utc_now
from server.services.deliveries import DeliveryService
from server.services.slots import Slots

log = logging.getLogger("reconrouter.delivery")

# (target system, delivery kind, outcome, seconds) per finished attempt: metrics.
AttemptObserver = Callable[[str, str, str, float], None]
# (deliveries by state, age of the oldest due one in seconds, attempts running here): metrics.
QueueSampler = Callable[[dict[str, int], float, int], None]
SAMPLE_EVERY_SECONDS = 5.0
# A tenant's configuration of a target, read in the given unit of work (TargetService.config_for).
ConfigLookup = Callable[[UnitOfWork, str, TargetSystem], TargetConfig | None]


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 16
    max_per_host: int = 8
    max_per_tenant: int = 8
    attempt_timeout_seconds: float = 30.0
    # A lease outlives the attempt's deadline by this much before another worker may take over.
    lease_margin_seconds: float = 30.0
    poll_seconds: float = 1.0
    # How often the scheduler looks for exceptions to escalate (API.md §8); 0: never.
    escalation_poll_seconds: float = 30.0

    @property
    def lease_seconds(self) -> float:
        return self.attempt_timeout_seconds + self.lease_margin_seconds


@dataclass(frozen=True)
class _Inputs:
    exception: ReconException | None
    config: TargetConfig | None


class _Bulkheads:
    """Attempts running in this process, at most so many per target host and per tenant."""

    def __init__(self, max_per_host: int, max_per_tenant: int) -> None:
        self._slots = Slots({"host": max_per_host, "tenant": max_per_tenant})

    def try_enter(self, tenant: str, host: str) -> bool:
        return self._slots.try_take(host=host, tenant=tenant)

    def leave(self, tenant: str, host: str) -> None:
        self._slots.give_back(host=host, tenant=tenant)

    def running(self) -> int:
        return self._slots.held("tenant")


def host_key(config: TargetConfig | None) -> str:
    """The host an attempt will call, from the tenant's configuration (one bulkhead per host)."""
    if config is None:
        return ""
    for name in ("url", "base_url", "instance_url"):
        url = config.setting(name)
        if url:
            parts = urlsplit(url)
            return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    return ""


class DeliveryWorker:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        deliveries: DeliveryService,
        connectors: ConnectorFactory,
        configs: ConfigLookup,
        schedule: RetrySchedule,
        settings: WorkerSettings,
        *,
        clock: Clock = utc_now,
        observe: AttemptObserver | None = None,
        sample: QueueSampler | None = None,
        name: str = "",
        escalate: Callable[[], int] | None = None,
    ) -> None:
        # Escalates overdue exceptions (DispatchService.escalate_overdue), run by the scheduler.
        self._escalate = escalate
        self._escalated_at = float("-inf")
        self._sample = sample
        self._sampled_at = 0.0
        self._uow = uow
        self._deliveries = deliveries
        self._connectors = connectors
        self._configs = configs
        self._schedule = schedule
        self._settings = settings
        self._clock = clock
        self._observe = observe
        self.owner = name or f"worker-{uuid.uuid4().hex[:12]}"
        self._bulkheads = _Bulkheads(settings.max_per_host, settings.max_per_tenant)
        self._wake = threading.Event()
        # The soonest retry this worker scheduled (monotonic time): the scheduler wakes for it even
        # when it is due before the next poll.
        self._soonest = float("inf")
        self._soonest_lock = threading.Lock()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="delivery")
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="delivery-scheduler", daemon=True)
        self._thread.start()
        log.info(
            "delivery worker started", extra={"worker": self.owner, "concurrency": self._settings.concurrency}
        )

    def wake(self) -> None:
        self._wake.set()

    def stop(self, grace: float) -> None:
        """No new claims; attempts under way get `grace` seconds (their leases expire otherwise)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        deadline = time.monotonic() + grace
        while self._bulkheads.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def running_attempts(self) -> int:
        return self._bulkheads.running()

    # -- the scheduler -------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            free = self._settings.concurrency - self._bulkheads.running()
            try:
                # Every free thread filled: more may be due at once. Fewer means the bulkheads or the
                # queue ran out: the next claim waits for an attempt to end, a wake or the poll.
                more = 0 < free <= self.claim_and_start()
                failures = 0
            except Exception:
                # The database may be down: keep trying, a little slower each time, never die.
                failures += 1
                log.warning("could not claim deliveries", exc_info=True, extra={"worker": self.owner})
                more = False
            self._sample_queue()
            self._maybe_escalate()
            if more:
                continue  # every free thread was filled: there may be more due right now
            pause = self._settings.poll_seconds * min(2**failures, 30)
            with self._soonest_lock:
                until_soonest = self._soonest - time.monotonic()
                self._soonest = float("inf")
            self._wake.wait(max(0.0, min(pause, until_soonest)))

    def _maybe_escalate(self) -> None:
        every = self._settings.escalation_poll_seconds
        if self._escalate is None or every <= 0 or time.monotonic() - self._escalated_at < every:
            return
        self._escalated_at = time.monotonic()
        try:
            count = self._escalate()
        except Exception:
            log.warning("could not escalate overdue exceptions", exc_info=True, extra={"worker": self.owner})
            return
        if count:
            log.info("escalated overdue exceptions", extra={"worker": self.owner, "count": count})

    def _sample_queue(self) -> None:
        if self._sample is None or time.monotonic() - self._sampled_at < SAMPLE_EVERY_SECONDS:
            return
        self._sampled_at = time.monotonic()
        try:
            now = self._clock()
            with self._uow(write=False, join=False) as uow:
                by_state = uow.deliveries.counts_by_state()
                oldest = uow.deliveries.oldest_due(now)
            age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
            self._sample(by_state, age, self._bulkheads.running())
        except Exception:
            log.warning("could not sample the delivery queue", exc_info=True)

    def claim_and_start(self) -> int:
        """Claims what the free threads and bulkheads allow and starts those attempts (how many)."""
        free = self._settings.concurrency - self._bulkheads.running()
        if free <= 0:
            return 0
        now = self._clock()
        # A read first: an idle worker must not take SQLite's write lock every poll for nothing.
        with self._uow(write=False, join=False) as uow:
            if not uow.deliveries.any_due(now):
                return 0
        lease_until = now + timedelta(seconds=self._settings.lease_seconds)
        entered: list[tuple[str, str]] = []
        hosts: dict[str, str] = {}
        # Read in the claim's own transaction, once per (tenant, target) per claim: always the
        # current configuration, and no second connection while the claim holds its lock.
        configs: dict[tuple[str, TargetSystem], TargetConfig | None] = {}
        try:
            with self._uow(write=True, join=False) as uow:

                def accept(candidate: Delivery) -> bool:
                    key = (candidate.tenant_id, candidate.target_system)
                    if key not in configs:
                        configs[key] = self._configs(uow, *key)
                    host = hosts[candidate.id] = host_key(configs[key])
                    if self._bulkheads.try_enter(candidate.tenant_id, host):
                        entered.append((candidate.tenant_id, host))
                        return True
                    return False

                claimed = uow.deliveries.claim_due(self.owner, now, lease_until, free, accept)
        except BaseException:
            for tenant, host in entered:
                self._bulkheads.leave(tenant, host)
            raise
        exceptions = self._exceptions_of(claimed)
        for delivery in claimed:
            inputs = None
            if exceptions is not None:
                found = exceptions.get((delivery.tenant_id, delivery.exception_id))
                inputs = _Inputs(found, configs[delivery.tenant_id, delivery.target_system])
            context = contextvars.copy_context()
            self._pool.submit(context.run, self._attempt_and_leave, delivery, hosts[delivery.id], inputs)
        return len(claimed)

    def _exceptions_of(self, claimed: list[Delivery]) -> dict[tuple[str, str], ReconException] | None:
        """The claimed deliveries' exceptions, one query per tenant (None: each attempt reads its own)."""
        by_tenant: dict[str, list[str]] = {}
        for delivery in claimed:
            by_tenant.setdefault(delivery.tenant_id, []).append(delivery.exception_id)
        if not by_tenant:
            return {}
        try:
            with self._uow(write=False, join=False) as uow:
                return {
                    (tenant, eid): found
                    for tenant, ids in by_tenant.items()
                    for eid, found in uow.exceptions.get_many(tenant, ids).items()
                }
        except Exception:
            log.warning("could not read the claimed deliveries' exceptions", exc_info=True)
            return None

    # -- one attempt -----------------------------------------------------------------------------

    def _attempt_and_leave(self, delivery: Delivery, host: str, inputs: _Inputs | None) -> None:
        try:
            self.attempt(delivery, inputs)
        except Exception:
            log.exception("delivery attempt failed outside the connector", extra={"delivery_id": delivery.id})
        finally:
            self._bulkheads.leave(delivery.tenant_id, host)
            self._wake.set()

    def attempt(self, delivery: Delivery, inputs: _Inputs | None = None) -> Delivery | None:
        """Calls the target once for a claimed delivery and records the outcome; the delivery as
        recorded, or None when the lease was lost meanwhile. `inputs`: read with the claim."""
        started = self._clock()
        began = time.monotonic()
        if inputs is None:
            with self._uow(write=False, join=False) as uow:
                inputs = _Inputs(
                    uow.exceptions.get(delivery.tenant_id, delivery.exception_id),
                    self._configs(uow, delivery.tenant_id, delivery.target_system),
                )
        exception, config = inputs.exception, inputs.config
        if exception is None or (exception.status is Status.RESOLVED and not delivery.is_resolution):
            outcome: TicketRef | DomainError | None = None
        else:
            outcome = self._call(delivery, exception, config)
        seconds = time.monotonic() - began
        now = self._clock()
        recorded, attempt = outcome_of(delivery, outcome, started, seconds, now, self._schedule)
        if self._observe is not None:
            self._observe(delivery.target_system.value, delivery.kind, attempt.outcome.value, seconds)
        if not self._deliveries.record(self.owner, recorded, attempt):
            log.warning("a delivery's lease was lost during its attempt", extra={"delivery_id": delivery.id})
            return None
        # One line per attempt for operators (never a URL, credential or body).
        log.info(
            "delivery attempt",
            extra={
                "delivery_id": delivery.id,
                "tenant": delivery.tenant_id,
                "target": delivery.target_system.value,
                "attempt": attempt.number,
                "outcome": attempt.outcome.value,
                "http_status": attempt.http_status,
                "duration_ms": attempt.duration_ms,
                "state": recorded.state.value,
            },
        )
        if recorded.state is DeliveryState.PENDING and recorded.next_attempt_at is not None:
            due_in = (recorded.next_attempt_at - self._clock()).total_seconds()
            with self._soonest_lock:
                self._soonest = min(self._soonest, time.monotonic() + max(0.0, due_in))
        return recorded

    def _call(
        self, delivery: Delivery, exception: ReconException, config: TargetConfig | None
    ) -> TicketRef | DomainError:
        try:
            connector = self._connectors.build(delivery.target_system, config)
        except DomainError as exc:
            return exc  # TARGET_NOT_CONFIGURED: the configuration was removed after the dispatch
        if delivery.is_resolution:
            resolution = ResolutionRequest(
                exception,
                delivery.external_reference or "",
                delivery.queue,
                delivery.key,
                delivery.id,
                check_existing=delivery.outcome_unknown,
            )
            try:
                with attempt_deadline(self._settings.attempt_timeout_seconds):
                    return connector.resolve(resolution)
            except Exception:
                log.exception("connector failed", extra={"delivery_id": delivery.id})
                return TargetDown(
                    f"{delivery.target_system.value} resolution failed unexpectedly", maybe_created=True
                )
        request = TicketRequest(
            exception,
            delivery.queue,
            delivery.key,
            external_marker(delivery.target_system, delivery.exception_id, delivery.queue),
            check_existing=delivery.outcome_unknown,
            delivery_id=delivery.id,
        )
        try:
            with attempt_deadline(self._settings.attempt_timeout_seconds):
                return connector.send([request])[0]
        except Exception:
            log.exception("connector failed", extra={"delivery_id": delivery.id})
            return TargetDown(
                f"{delivery.target_system.value} delivery failed unexpectedly", maybe_created=True
            )
