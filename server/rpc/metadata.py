from __future__ import annotations

import grpc


def metadata_value(context: grpc.ServicerContext, name: str) -> str | None:
    """First value of a request metadata key (keys arrive lower-cased)."""
    for item in context.invocation_metadata() or ():
        if item.key == name:
            return item.value if isinstance(item.value, str) else None
    return None
