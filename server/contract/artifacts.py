"""Where `make gen` writes what the running service and Envoy read: one place for these paths."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GEN_DIR = PROJECT_ROOT / "gen"
# Every proto of the contract with its imports and source comments: Envoy's transcoder loads it and
# the OpenAPI generator reads it.
DESCRIPTOR_SET = GEN_DIR / "reconrouter.pb"
# The OpenAPI document of the REST routes (server/codegen/openapi.py), served at GET /openapi.json.
OPENAPI_DOCUMENT = GEN_DIR / "openapi.json"
