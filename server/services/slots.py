"""Bounded concurrency by key: how many holders each key of each dimension may have at once.

Slots({"host": 8, "tenant": 8}).try_take(host="a:443", tenant="t1") takes a place in both or in
neither. The delivery workers use it for their bulkheads (per target host, per tenant), dispatch
calls for their waiting places (in all, per tenant)."""

from __future__ import annotations

import threading


class Slots:
    def __init__(self, caps: dict[str, int]) -> None:
        self._caps = dict(caps)
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, int]] = {dimension: {} for dimension in caps}

    def try_take(self, **keys: str) -> bool:
        with self._lock:
            if any(self._held[d].get(k, 0) >= self._caps[d] for d, k in keys.items()):
                return False
            for d, k in keys.items():
                self._held[d][k] = self._held[d].get(k, 0) + 1
            return True

    def give_back(self, **keys: str) -> None:
        with self._lock:
            for d, k in keys.items():
                left = self._held[d][k] - 1
                if left:
                    self._held[d][k] = left
                else:
                    del self._held[d][k]

    def held(self, dimension: str) -> int:
        """Places taken in all, counted along one dimension."""
        with self._lock:
            return sum(self._held[dimension].values())
