"""`make run` as a newcomer meets it: in a real terminal (a pseudo-terminal here), stopped with Ctrl-C.

Ctrl-C is the byte 0x03 written to the terminal: the line discipline turns it into SIGINT for the
whole foreground process group (make, the supervisor, every worker and Envoy), exactly as a shell's
terminal does. Nothing here asserts how fast anything is; every wait is a generous deadline whose
expiry is the failure being tested (a hang).
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from server.process.startup import port_in_use
from tests.support.stack import ROOT, free_port

# A hang is a run that has not ended after this long; the shutdown budget is far below it.
EXIT_DEADLINE_SECONDS = 90.0
START_DEADLINE_SECONDS = 120.0
ROUNDS = int(os.environ.get("FIRST_RUN_ROUNDS", "20"))


class Terminal:
    """A command on a pseudo-terminal of its own (its session leader, its foreground group)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes argv
            try:
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = bytearray()
        self.returncode: int | None = None

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                chunk = b""
            self.output += chunk
            if not chunk:
                time.sleep(timeout)

    def _reap(self) -> bool:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode is not None

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            if self._reap():
                self._pump(0.05)
                return needle in self.text()
            self._pump(0.1)
        return False

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None when it is still running after `timeout` (a hang)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reap():
                return self.returncode
            self._pump(0.1)
        return None

    def session_processes(self) -> list[int]:
        """Processes still in the terminal's session (forked workers, Envoy, make)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                state, session = fields[0], int(fields[3])
                if session == self.pid and state != "Z":
                    found.append(int(entry.name))
        return found

    def kill_session(self) -> None:
        for pid in self.session_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # The test's own settings must not leak in (e.g. a DATABASE_URL of another stack).
        if not key.startswith(("GRPC_", "HTTP_", "ENVOY_", "DATABASE_URL", "METRICS_", "WORKERS"))
        and key not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}",
        TARGET_SECRETS_KEY_FILE=str(tmp_path / "secrets.key"),
        ACCESS_LOG=str(tmp_path / "access.log"),
        GRPC_PORT=str(free_port()),
        HTTP_PORT=str(free_port()),
        ENVOY_ADMIN_PORT=str(free_port()),
        METRICS_PORT="0",
        WORKERS="2",
        TERM="dumb",
    )
    env.update(overrides)
    return env


def _start(env: dict[str, str], argv: list[str] | None = None) -> Terminal:
    return Terminal(argv or ["make", "--no-print-directory", "run"], env, ROOT)


def _assert_all_gone(terminal: Terminal, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while terminal.session_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert terminal.session_processes() == [], "processes outlived Ctrl-C:\n" + terminal.text()[-3000:]
    for setting in ("GRPC_PORT", "HTTP_PORT"):
        assert not port_in_use("127.0.0.1", int(env[setting])), f"{setting} still held after exit"


@pytest.mark.long
@pytest.mark.timeout(ROUNDS * (START_DEADLINE_SECONDS + EXIT_DEADLINE_SECONDS + 30))
def test_make_run_stops_on_ctrl_c_every_time(tmp_path):
    """Twenty starts of `make run`, each stopped by one Ctrl-C: every one ends, leaving nothing."""
    for round_number in range(ROUNDS):
        env = _env(tmp_path)
        terminal = _start(env)
        try:
            started = terminal.wait_for("Ctrl-C stops", START_DEADLINE_SECONDS)
            assert started, f"round {round_number}: no banner\n{terminal.text()[-3000:]}"
            # Vary the moment: right away, and after the workers have settled.
            if round_number % 2:
                time.sleep(1.0)
            terminal.ctrl_c()
            code = terminal.wait_exit(EXIT_DEADLINE_SECONDS)
            assert code is not None, (
                f"round {round_number}: still running after Ctrl-C\n{terminal.text()[-3000:]}"
            )
            assert "Traceback" not in terminal.text(), terminal.text()[-3000:]
            _assert_all_gone(terminal, env)
        finally:
            terminal.kill_session()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_during_start_up_stops_too(tmp_path, workers):
    """Ctrl-C before the banner (migrating, starting Envoy, forking workers) is no traceback, no
    hang; with one worker the server runs in the foreground process itself."""
    for delay in (0.3, 1.5, 3.0, 30.0):
        env = _env(tmp_path, WORKERS=workers)
        terminal = _start(env, [str(ROOT / ".venv/bin/python"), "-m", "server", "run"])
        try:
            terminal.wait_for("Ctrl-C stops", delay)
            terminal.ctrl_c()
            code = terminal.wait_exit(EXIT_DEADLINE_SECONDS)
            assert code is not None, f"still running after Ctrl-C at {delay}s\n{terminal.text()[-3000:]}"
            assert "Traceback" not in terminal.text(), terminal.text()[-3000:]
            _assert_all_gone(terminal, env)
        finally:
            terminal.kill_session()


def test_first_run_banner_shows_a_token_that_works_and_the_second_says_how_to_get_one(tmp_path):
    env = _env(tmp_path)
    terminal = _start(env)
    try:
        assert terminal.wait_for("Ctrl-C stops", START_DEADLINE_SECONDS), terminal.text()[-3000:]
        banner = terminal.text()
        token_lines = [line for line in banner.splitlines() if "export TOKEN=" in line]
        assert token_lines, banner
        token = token_lines[0].split("export TOKEN=", 1)[1].strip()
        # The token in the banner is a real one: the curl the banner suggests answers 200.
        response = httpx.get(
            f"http://127.0.0.1:{env['HTTP_PORT']}/v1/exceptions?limit=5",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        # Calls go to the access log file, not over the banner.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "ListExceptions" not in _read(tmp_path / "access.log"):
            terminal._pump(0.1)
        assert "ListExceptions" in _read(tmp_path / "access.log")
        terminal._pump(0.5)
        assert "ListExceptions" not in terminal.text()
        terminal.ctrl_c()
        assert terminal.wait_exit(EXIT_DEADLINE_SECONDS) is not None
    finally:
        terminal.kill_session()

    # Second run on the same database: no new token, and the banner says how to make one.
    env = _env(tmp_path)
    terminal = _start(env)
    try:
        assert terminal.wait_for("Ctrl-C stops", START_DEADLINE_SECONDS), terminal.text()[-3000:]
        banner = terminal.text()
        assert "<token>" not in banner
        assert "export TOKEN=$(.venv/bin/python -m server tokens create --tenant default)" in banner
        assert "$TOKEN" in banner
        terminal.ctrl_c()
        assert terminal.wait_exit(EXIT_DEADLINE_SECONDS) is not None
    finally:
        terminal.kill_session()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@pytest.mark.parametrize("setting", ["GRPC_PORT", "HTTP_PORT", "ENVOY_ADMIN_PORT"])
def test_a_taken_port_is_one_line_and_a_failure_with_no_token_made(tmp_path, setting):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        env = _env(tmp_path, **{setting: str(holder.getsockname()[1])})
        terminal = _start(env, [str(ROOT / ".venv/bin/python"), "-m", "server", "run"])
        try:
            code = terminal.wait_exit(EXIT_DEADLINE_SECONDS)
            text = terminal.text()
            assert code is not None, f"no exit with {setting} taken (a restart loop?)\n{text[-3000:]}"
            assert code != 0
            assert "Traceback" not in text, text
            lines = [line for line in text.splitlines() if line.strip()]
            assert lines == [
                f"error: port {env[setting]} on 127.0.0.1 is already in use ({setting}): "
                f"stop what holds it, or set {setting} to a free port"
            ], text
            # Checked before anything else: no database, so no token was made and lost unseen.
            assert not (tmp_path / "run.db").exists()
        finally:
            terminal.kill_session()


def test_envoy_failing_to_start_is_reported_at_once_with_its_reason(tmp_path):
    """Envoy that cannot start (here: its port taken after the check, a race `run` cannot rule out)
    is an error carrying the reason from its log, raised as soon as it exits."""
    from server.contract.artifacts import DESCRIPTOR_SET
    from server.contract.methods import service_names
    from server.process.envoy import render_config, start_envoy
    from server.process.local_run import stop_process, wait_for_envoy
    from server.process.signals import StopSignals
    from server.process.startup import StartupError

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        admin = free_port()
        config = render_config(
            http_port=taken,
            grpc_port=free_port(),
            admin_port=admin,
            descriptor_path=DESCRIPTOR_SET,
            services=service_names(),
            out_path=tmp_path / "envoy.yaml",
        )
        log_path = tmp_path / "envoy.log"
        log_path.write_text("an older run's line [critical] must not be quoted\n")
        offset = log_path.stat().st_size
        envoy = start_envoy(config, log_path=log_path)
        try:
            with pytest.raises(StartupError) as failure:
                wait_for_envoy(envoy, admin, log_path, offset, StopSignals())
        finally:
            stop_process(envoy)
    message = str(failure.value)
    assert "Envoy exited with code" in message
    assert f"127.0.0.1:{taken}" in message and "in use" in message, message
    assert "older run" not in message
    assert str(log_path) in message


def test_make_run_installs_runtime_dependencies_only_and_says_so(tmp_path):
    """On a machine without a virtualenv, `make run` would install the package without its dev
    extras, announcing it; `make test` adds the dev extras (read from make's dry run)."""
    import subprocess

    venv = tmp_path / "venv"

    def plan(target: str) -> str:
        return subprocess.run(
            ["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    run_plan = plan("run")
    installs = [line for line in run_plan.splitlines() if "pip install" in line and "-e" in line]
    assert installs, run_plan
    assert all("[dev]" not in line for line in installs), run_plan
    assert any(line.rstrip().endswith("-e .") for line in installs), run_plan
    assert all(" -q " not in line for line in installs), "the install must show progress"
    assert "installing the runtime dependencies" in run_plan
    test_plan = plan("test")
    assert any("pip install" in line and "[dev]" in line for line in test_plan.splitlines()), test_plan


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_its_grpc_port_taken_fails_once_instead_of_restarting(tmp_path, workers):
    """`python -m server serve` has no check up front: the workers find the port taken themselves,
    and the supervisor stops with an error instead of restarting them every second forever."""
    import subprocess
    import sys

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        env = _env(tmp_path, GRPC_PORT=str(port), WORKERS=workers, ACCESS_LOG="stderr")
        subprocess.run([sys.executable, "-m", "server", "migrate"], env=env, check=True, capture_output=True)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "server", "serve"],
                env=env,
                capture_output=True,
                text=True,
                timeout=EXIT_DEADLINE_SECONDS,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"serve kept running with its port taken (a restart loop?): {exc.stderr!r}")
    assert result.returncode != 0
    assert "restarting" not in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use (GRPC_PORT)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: "), result.stderr
