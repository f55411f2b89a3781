from __future__ import annotations

import grpc


def metadata_value(context: grpc.ServicerContext, name: str) -> str | None:
    """First value of a request metadata key (keys arrive lower-cased)."""
    # Unpacked, not .key/.value: grpc's items are (key, value) namedtuples, its stubs say plain tuples.
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else None
    return None
