"""Benchmarks (not tests): `python -m bench` (bench/__main__.py; make bench, make bench-quick) runs the
scenario list of bench/scenarios/ through the shared harness (bench/harness.py) and writes
bench/results/; `python -m bench dispatch|idempotency|bulk` runs one scenario of it alone. Results are
ignored by git except the reference runs docs/benchmarks.md quotes. docs/benchmarks.md explains the
scenarios and every number."""
