"""GET /docs in a real headless Chromium (Debian's chromium + chromedriver, driven over the W3C
WebDriver protocol): the page lists every operation of /openapi.json, and "Authorize" + "Try it out"
with a token makes a call that answers 200. The browser can resolve no host but loopback, and the
page loads nothing from anywhere but this Envoy.

Skips when chromium or chromedriver is missing, unless REQUIRE_BROWSER is set (CI installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.process.envoy import DOCS_ASSETS
from tests.support.stack import ROOT, free_port

CHROMEDRIVER = shutil.which("chromedriver")
# Debian's /usr/bin/chromium is a launcher script; the driver needs the binary itself.
_CANDIDATES = ("/usr/lib/chromium/chromium", shutil.which("chromium"))
CHROMIUM = next((p for p in _CANDIDATES if p and Path(p).exists()), None)
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element key
WAIT_SECONDS = 60.0

_missing = [name for name, found in (("chromedriver", CHROMEDRIVER), ("chromium", CHROMIUM)) if not found]
if not (DOCS_ASSETS / "swagger-ui-bundle.js").exists():
    _missing.append("Swagger UI (make docs-assets)")
if _missing and os.environ.get("REQUIRE_BROWSER"):
    raise RuntimeError(f"REQUIRE_BROWSER is set but these are missing: {_missing}")
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"missing: {_missing}")


class Browser:
    """A W3C WebDriver session on chromedriver: the few commands this test needs."""

    def __init__(self, driver: httpx.Client, session: str) -> None:
        self.driver, self.session = driver, session

    def _call(self, method: str, path: str, body: dict | None = None):
        response = self.driver.request(method, f"/session/{self.session}{path}", json=body)
        payload = response.json()
        if response.status_code != 200:
            raise AssertionError(f"{method} {path}: {payload}")
        return payload["value"]

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def run(self, script: str, *args):
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> list[str]:
        found = self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [e[ELEMENT] for e in found]

    def wait_for(self, css: str, timeout: float = WAIT_SECONDS) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(css)
            if found:
                return found
            time.sleep(0.2)
        page = self.run("return document.body.innerText")
        raise AssertionError(f"{css!r} never appeared; page text:\n{page}")

    def click(self, element: str) -> None:
        self._call("POST", f"/element/{element}/click", {})

    def type(self, element: str, text: str) -> None:
        self._call("POST", f"/element/{element}/value", {"text": text})

    def text(self, element: str) -> str:
        return self._call("GET", f"/element/{element}/text")


@pytest.fixture
def browser(tmp_path) -> Iterator[Browser]:
    port = free_port()
    driver_process = subprocess.Popen(
        [CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    driver = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_SECONDS)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                if driver.get("/status").json()["value"]["ready"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "chromedriver did not start"
            time.sleep(0.1)
        options = {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'profile'}",
                # Nothing but loopback resolves: the page must work with no network access.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--no-proxy-server",
            ],
        }
        created = driver.post(
            "/session",
            json={"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}},
        ).json()
        assert "sessionId" in created.get("value", {}), created
        session = created["value"]["sessionId"]
        try:
            yield Browser(driver, session)
        finally:
            driver.delete(f"/session/{session}")
    finally:
        driver.close()
        driver_process.terminate()
        try:
            driver_process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            driver_process.kill()
            driver_process.wait(timeout=10)


def _operations(document: dict) -> set[tuple[str, str]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return {(m.upper(), path) for path, item in document["paths"].items() for m in item if m in methods}


def test_docs_lists_every_operation_and_try_it_with_a_token_answers_200(stack, browser):
    document = httpx.get(f"{stack.base_url}/openapi.json").json()
    token = stack.create_token("docs-tenant", ["exceptions:read", "exceptions:write"])
    created = httpx.post(
        f"{stack.base_url}/v1/exceptions",
        json={"transaction_id": "txn-docs"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 200, created.text
    browser.open(f"{stack.base_url}/docs")
    browser.wait_for(".opblock")
    shown = browser.run(
        """return Array.from(document.querySelectorAll('.opblock')).map(block => [
             block.querySelector('.opblock-summary-method').innerText.trim(),
             block.querySelector('.opblock-summary-path').getAttribute('data-path')])"""
    )
    assert {(method, path) for method, path in shown} == _operations(document)

    # Authorize with the token (the document's bearer scheme), then try GET /v1/exceptions.
    browser.click(browser.wait_for("button.authorize")[0])
    field = browser.wait_for(".modal-ux input")[0]
    browser.type(field, token)
    browser.click(browser.wait_for(".modal-ux button.authorize")[0])
    browser.click(browser.wait_for(".modal-ux button.btn-done")[0])

    # (Swagger UI escapes the dots of the tag in the block's id with backslashes.)
    list_block = '.opblock[id$="-ExceptionsService_ListExceptions"]'
    browser.click(browser.wait_for(f"{list_block} .opblock-summary-control")[0])
    browser.click(browser.wait_for(f"{list_block} .try-out__btn")[0])
    browser.click(browser.wait_for(f"{list_block} button.execute")[0])
    status = browser.wait_for(f"{list_block} .live-responses-table tr.response .response-col_status")[0]
    assert browser.text(status).strip() == "200"
    body = browser.text(browser.wait_for(f"{list_block} .live-responses-table .microlight")[0])
    # The call carried the token: the tenant's own exception is in the page it got.
    assert created.json()["id"] in [item["id"] for item in json.loads(body)["items"]]

    # Everything the page loaded came from this Envoy.
    loaded = browser.run("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded, "the page loaded no resources at all?"
    assert all(url.startswith(stack.base_url) for url in loaded), loaded


def test_docs_assets_have_their_content_types(stack):
    expected = {
        "/docs": "text/html",
        "/docs/init.js": "text/javascript",
        "/docs/swagger-ui-bundle.js": "text/javascript",
        "/docs/swagger-ui.css": "text/css",
    }
    for path, content_type in expected.items():
        response = httpx.get(f"{stack.base_url}{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(content_type), path
    bundle = httpx.get(f"{stack.base_url}/docs/swagger-ui-bundle.js")
    assert bundle.content == (DOCS_ASSETS / "swagger-ui-bundle.js").read_bytes()
    assert httpx.get(f"{stack.base_url}/docs/").headers["location"].endswith("/docs")
    assert (ROOT / "envoy" / "docs" / "index.html").read_text() == httpx.get(f"{stack.base_url}/docs").text
