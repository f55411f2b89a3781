"""Benchmarks (not tests): `python -m bench` (make bench, make bench-quick) runs the scenario list of
bench/scenarios/ through the shared harness (bench/harness.py) and writes bench/results/; the
single-scenario scripts (bench/idempotency.py, bench/dispatch.py, bench/bulk.py) run one scenario
of it. docs/benchmarks.md explains the scenarios and every number."""
