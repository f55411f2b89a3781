"""The benchmark suite (bench/, `make bench`) runs: one tiny iteration of every scenario, checked for
well-formed results. Never a timing assertion: numbers on a shared machine prove nothing here.

wrk and h2load are used when installed; otherwise the Python driver stands in (and one test forces it,
so that path runs everywhere)."""

from __future__ import annotations

import json
import math
import os

import pytest

from bench import suite
from bench.scenarios import SCENARIOS

NUMBERS = ("rps", "p50_ms", "p99_ms", "server_cpu_s_per_req", "envoy_cpu_s_per_req", "db_statements_per_req")
PEAKS = ("server_peak_rss_mb", "envoy_peak_rss_mb")


def check_measurement(m: dict) -> None:
    assert m["name"] and m["scenario"] and m["transport"] in ("rest", "grpc"), m
    assert m["driver"] in ("wrk", "h2load", "python"), m
    assert m["requests"] > 0, m
    assert m["errors"] == 0, m
    for key in NUMBERS:
        assert isinstance(m[key], (int, float)) and math.isfinite(m[key]) and m[key] >= 0, (key, m)
    assert m["rps"] > 0 and m["p99_ms"] >= m["p50_ms"] > 0, m
    for key in PEAKS:
        assert m[key] > 0, (key, m)
    assert m["items_per_s"] == pytest.approx(m["rps"] * m["items_per_request"], rel=1e-3, abs=0.2)
    assert len(m["runs"]) >= 1 and all(r["requests"] > 0 for r in m["runs"]), m


def check_results(results: dict, json_path, md_path, scenarios: set[int]) -> None:
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(results, default=str))
    measured = {int(m["scenario"].split()[0]) for m in results["measurements"]}
    noted = {int(t["scenario"].split()[0]) for t in results["todo"] + results["skipped"]}
    assert scenarios <= measured | noted, f"no result for scenarios {scenarios - measured - noted}"
    for m in results["measurements"]:
        check_measurement(m)
    for r in results["ratios"]:
        assert math.isfinite(r["value"]) and r["numerator"] and r["denominator"], r
    markdown = md_path.read_text()
    for m in results["measurements"]:
        assert f"| {m['name']} |" in markdown


def test_every_scenario_runs_once_and_writes_well_formed_results(tmp_path):
    results, json_path, md_path = suite.run("smoke", out_dir=tmp_path / "results", log=lambda _: None)
    check_results(results, json_path, md_path, {s.number for s in SCENARIOS})
    names = {m["name"] for m in results["measurements"]}
    assert {"live_grpc", "live_rest", "get_exception_rest", "dispatch_manual_first_rest"} <= names
    assert any(n.startswith("scale_") for n in names) and any(n.startswith("workers2_") for n in names)
    ratios = {r["name"] for r in results["ratios"]}
    assert "GetException REST / ceiling REST (req/s)" in ratios
    assert results["profiles"], "no profile entry"
    for profile in results["profiles"]:
        if profile.get("error"):  # py-spy is installed by `make bench`, not by `make venv`
            assert "py-spy" in profile["error"], profile
            continue
        assert profile["samples"] > 0 and profile["areas"] and profile["self"], profile
        assert (tmp_path / "results" / os.path.basename(profile["file"])).exists()


def test_the_python_driver_stands_in_for_missing_tools(tmp_path):
    results, json_path, md_path = suite.run(
        "smoke", only={1}, driver="python", profile=False, out_dir=tmp_path, log=lambda _: None
    )
    check_results(results, json_path, md_path, {1})
    assert {m["driver"] for m in results["measurements"]} == {"python"}


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="TEST_DATABASE_URL is not set")
def test_workers_and_replicas_on_postgres(tmp_path):
    results, json_path, md_path = suite.run(
        "smoke",
        only={7},
        database_url=os.environ["TEST_DATABASE_URL"],
        profile=False,
        out_dir=tmp_path,
        log=lambda _: None,
    )
    check_results(results, json_path, md_path, {7})
    assert results["environment"]["database"] == "postgresql"
    assert any(m["name"].startswith("replicas2_") for m in results["measurements"])


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="TEST_DATABASE_URL is not set")
def test_the_plan_runs_again_on_postgresql_side_by_side(tmp_path, capsys):
    from bench.__main__ import main

    url = os.environ["TEST_DATABASE_URL"]
    args = ["--plan", "smoke", "--only", "1,4", "--no-profile", "--driver", "python", "--out", str(tmp_path)]
    assert main([*args, "--also", url]) == 0
    runs = sorted(tmp_path.glob("*Z.json"))
    assert len(runs) == 2, runs
    first, second = (json.loads(p.read_text()) for p in runs)
    assert (first["environment"]["database"], second["environment"]["database"]) == ("sqlite", "postgresql")
    (compared,) = tmp_path.glob("*-compare.md")
    page = compared.read_text()
    assert "| measure | via | sqlite rate | postgresql rate | postgresql / sqlite |" in page
    for m in first["measurements"]:
        row = next(line for line in page.splitlines() if line.startswith(f"| {m['name']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(c != "-" for c in cells[2:]), row  # both rates, their ratio, both tails
        assert float(cells[5]) >= 1 and float(cells[6]) >= 1, row  # p99 >= p50 on each side
    for run in runs:
        assert "| p99/p50 |" in run.with_suffix(".md").read_text()
    # A server that does not answer: the SQLite run stands, with the reason said.
    assert main([*args, "--also", "postgresql+psycopg://nobody@127.0.0.1:9/none"]) == 0
    assert "no PostgreSQL run" in capsys.readouterr().out
