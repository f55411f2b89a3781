"""buf lint (STANDARD) and buf breaking over the descriptor set `make gen` writes, with buf.yaml's
exceptions: each one still needed and written down, and both checks able to fail.

buf comes from the npm registry (`make buf-lint` installs it into .venv/buf); these tests skip when
it is not installed, which CI never is: `make lint` runs first and installs it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from google.protobuf import descriptor_pb2

from server.contract.artifacts import DESCRIPTOR_SET, PROJECT_ROOT

BUF = PROJECT_ROOT / ".venv" / "buf" / "node_modules" / ".bin" / "buf"
CONFIG = PROJECT_ROOT / "buf.yaml"

pytestmark = pytest.mark.skipif(not BUF.exists(), reason="buf not installed (make buf-lint installs it)")


def _buf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BUF), *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)


def _lint(image: Path, config: Path = CONFIG) -> list[dict]:
    image_ref = f"{image}#format=binpb"
    result = _buf("lint", image_ref, "--config", str(config), "--path", "reconrouter", "--error-format=json")
    findings = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert (result.returncode == 0) == (not findings), result.stderr
    return findings


def _breaking(image: Path, against: Path) -> list[dict]:
    result = _buf(
        "breaking",
        f"{image}#format=binpb",
        "--against",
        f"{against}#format=binpb",
        "--config",
        str(CONFIG),
        "--path",
        "reconrouter",
        "--error-format=json",
    )
    findings = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert (result.returncode == 0) == (not findings), result.stderr
    return findings


def _descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(Path(DESCRIPTOR_SET).read_bytes())


def _file(files: descriptor_pb2.FileDescriptorSet, name: str) -> descriptor_pb2.FileDescriptorProto:
    return next(f for f in files.file if f.name == name)


def test_the_protos_pass_buf_lint_standard_with_the_recorded_exceptions():
    assert _lint(Path(DESCRIPTOR_SET)) == []


def test_every_exception_is_still_needed_and_has_its_reason_in_decisions(tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    decisions = (PROJECT_ROOT / "docs" / "decisions.md").read_text()
    ignored = config["lint"]["ignore_only"]
    assert ignored
    for rule in ignored:
        assert f"`{rule}`" in decisions, f"{rule} ignored in buf.yaml without a reason in docs/decisions.md"
        others = {r: paths for r, paths in ignored.items() if r != rule}
        stricter = dict(config, lint=dict(config["lint"], ignore_only=others))
        (tmp_path / "buf.yaml").write_text(yaml.safe_dump(stricter))
        found = {finding["type"] for finding in _lint(Path(DESCRIPTOR_SET), tmp_path / "buf.yaml")}
        assert found == {rule}, f"without the exception for {rule}: {found}"


def test_lint_fails_on_a_new_violation(tmp_path):
    files = _descriptor_set()
    exceptions = _file(files, "reconrouter/exceptions/v1/exceptions.proto")
    exceptions.message_type.add(name="lower_case_message")
    image = tmp_path / "bad.pb"
    image.write_bytes(files.SerializeToString())
    assert "MESSAGE_PASCAL_CASE" in {finding["type"] for finding in _lint(image)}


def test_breaking_passes_against_itself_and_fails_on_a_deleted_field_or_renamed_enum_value(tmp_path):
    current = Path(DESCRIPTOR_SET)
    assert _breaking(current, current) == []

    files = _descriptor_set()
    exceptions = _file(files, "reconrouter/exceptions/v1/exceptions.proto")
    create = next(m for m in exceptions.message_type if m.name == "CreateExceptionRequest")
    del create.field[-1]
    image = tmp_path / "deleted.pb"
    image.write_bytes(files.SerializeToString())
    assert "FIELD_NO_DELETE" in {finding["type"] for finding in _breaking(image, current)}

    files = _descriptor_set()
    exceptions = _file(files, "reconrouter/exceptions/v1/exceptions.proto")
    severity = next(e for e in exceptions.enum_type if e.name == "Severity")
    severity.value[-1].name = "SEVERE"
    image = tmp_path / "renamed.pb"
    image.write_bytes(files.SerializeToString())
    assert "ENUM_VALUE_SAME_NAME" in {finding["type"] for finding in _breaking(image, current)}
