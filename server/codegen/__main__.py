"""`make gen`: protobuf messages, gRPC stubs, type stubs, Envoy's descriptor set and the OpenAPI document
(gen/openapi.json, server/codegen/openapi.py), all into gen/.

Run only through the Makefile. The output is deterministic for pinned grpcio-tools/protobuf, which is
what lets CI check that the committed gen/ is fresh.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from google.api import annotations_pb2
from grpc_tools import protoc

from server.codegen import openapi
from server.contract.artifacts import DESCRIPTOR_SET, GEN_DIR, OPENAPI_DOCUMENT, PROJECT_ROOT

ROOT = PROJECT_ROOT
GEN = GEN_DIR
PROTO = ROOT / "proto"
# Without these two, Envoy drops error details from the JSON error bodies it transcodes.
RPC_PROTOS = ["google/rpc/status.proto", "google/rpc/error_details.proto"]


def _include_dirs() -> list[str]:
    googleapis = Path(annotations_pb2.__file__).resolve().parents[2]
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    return [str(PROTO), str(googleapis), str(well_known)]


def _run(args: list[str]) -> None:
    includes = [f"-I{d}" for d in _include_dirs()]
    code = protoc.main(["grpc_tools.protoc", *includes, *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}): {' '.join(args)}")


def main(proto_files: list[str]) -> None:
    relative = sorted(str(Path(p).resolve().relative_to(PROTO)) for p in proto_files)
    package_root = GEN / "reconrouter"
    if package_root.exists():
        shutil.rmtree(package_root)
    GEN.mkdir(exist_ok=True)
    _run([f"--python_out={GEN}", f"--grpc_python_out={GEN}", f"--pyi_out={GEN}", *relative])
    _run(
        [
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={DESCRIPTOR_SET}",
            *relative,
            *RPC_PROTOS,
        ]
    )
    openapi.write(DESCRIPTOR_SET, OPENAPI_DOCUMENT)
    # Regular packages, so setuptools and type checkers find them.
    for directory in sorted({p.parent for p in package_root.rglob("*.py")} | {package_root}):
        while directory != GEN:
            (directory / "__init__.py").touch()
            directory = directory.parent
    print(f"generated {len(relative)} proto files into {GEN.relative_to(ROOT)}/")


if __name__ == "__main__":
    main(sys.argv[1:])
