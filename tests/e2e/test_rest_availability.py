"""What REST callers see when the server or its database is gone, and that it recovers."""

import httpx

from tests.e2e.conftest import error_reason
from tests.support.stack import Stack


def test_server_down_is_json_503_then_recovers(tmp_path):
    with Stack(f"sqlite:///{tmp_path / 'db.sqlite'}", work_dir=tmp_path) as stack:
        token = stack.create_token("avail", ["exceptions:read"])
        url = f"{stack.base_url}/v1/exceptions"
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(url, headers=headers).status_code == 200
        stack.stop_server()
        down = httpx.get(url, headers=headers)
        assert down.status_code == 503
        assert down.headers["content-type"].startswith("application/json")
        assert error_reason(down) == "UNAVAILABLE"
        assert httpx.get(f"{stack.base_url}/healthz").status_code == 503
        stack.start_server()
        assert httpx.get(url, headers=headers).status_code == 200
