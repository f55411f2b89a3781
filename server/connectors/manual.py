"""MANUAL: nothing is called; the exception is marked for people to pick up by hand."""

from __future__ import annotations

import hashlib

from server.domain.dispatch import TargetSystem, TicketRef
from server.domain.exceptions import ReconException


class ManualConnector:
    target = TargetSystem.MANUAL

    def create(self, exception: ReconException, queue: str, key: str) -> TicketRef:
        # Derived from the dispatch key, so the same dispatch always names the same reference.
        return TicketRef(f"MANUAL-{hashlib.sha256(key.encode()).hexdigest()[:12].upper()}", acknowledged=True)
