"""Durable delivery (API.md §7): the workers that carry out recorded dispatches (docs/delivery.md)."""
