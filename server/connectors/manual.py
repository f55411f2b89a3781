"""MANUAL: nothing is called; the exception is marked for people to pick up by hand."""

from __future__ import annotations

import hashlib

from server.domain.dispatch import ResolutionRequest, TargetSystem, TicketRef, TicketRequest
from server.domain.errors import DomainError


class ManualConnector:
    target = TargetSystem.MANUAL
    external = False  # no call leaves the process: dispatch needs no pending record
    batch_size = 100

    def send(self, batch: list[TicketRequest]) -> list[TicketRef | DomainError]:
        return [self.create(r.key) for r in batch]

    def resolve(self, request: ResolutionRequest) -> TicketRef | DomainError:
        return TicketRef(request.ticket, acknowledged=True)  # nothing outside to tell

    @staticmethod
    def create(key: str) -> TicketRef:
        # Derived from the dispatch key, so the same dispatch always names the same reference.
        return TicketRef(f"MANUAL-{hashlib.sha256(key.encode()).hexdigest()[:12].upper()}", acknowledged=True)
