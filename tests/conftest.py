import os

import pytest

REQUIRED = os.environ.get("REQUIRE_POSTGRES") == "1"


def pytest_configure(config):
    # CI sets REQUIRE_POSTGRES so that a missing TEST_DATABASE_URL cannot silently skip those tests.
    if REQUIRED and not os.environ.get("TEST_DATABASE_URL"):
        raise pytest.UsageError("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")


def pytest_sessionfinish(session, exitstatus):
    if not REQUIRED:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [r for r in reporter.stats.get("skipped", []) if "postgres" in r.nodeid] if reporter else []
    if skipped:
        print(f"\n{len(skipped)} PostgreSQL tests were skipped but REQUIRE_POSTGRES=1")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
