# One entry point for everything: the README's commands call these targets. `make` alone lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROTO_FILES := $(shell find proto -name '*.proto' | sort)

.PHONY: help venv gen gen-check migrate run cluster test fuzz soak bench bench-quick bench-tools bench-idempotency bench-dispatch bench-bulk lint typecheck fmt clean
.DEFAULT_GOAL := help
# A recipe that fails leaves no half-written target behind (gen/reconrouter.pb, $(VENV)/.installed).
.DELETE_ON_ERROR:

help: ## this list
	@echo 'usage: make TARGET [VAR=value ...]'
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo 'variables: PYTEST_ARGS, BENCH_ARGS (python -m bench --help), BENCH_DATABASE_URL, CLUSTER_DATABASE_URL,'
	@echo '  REPLICAS, FUZZ_EXAMPLES, HYPOTHESIS_EXAMPLES, SOAK_SECONDS, VENV'

# The virtualenv is (re)built when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@# gen/ holds the generated `reconrouter` package; its modules import each other by proto package.
	$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/reconrouter_gen.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)/gen"
	touch $@

venv: $(VENV)/.installed ## the virtualenv in .venv (rebuilt when pyproject.toml changes)

# Messages, stubs, .pyi, the descriptor set Envoy loads and gen/openapi.json; only these rules write
# gen/. gen/reconrouter.pb stands for all of it: regenerated when a .proto, the generator (with the
# server modules it reads for the OpenAPI document) or the virtualenv is newer.
GEN_OUT := gen/reconrouter.pb
CODEGEN_SOURCES := $(wildcard server/codegen/*.py server/contract/*.py server/domain/idempotency.py)
GENERATE = $(PY) -m server.codegen $(PROTO_FILES)

$(GEN_OUT): $(PROTO_FILES) $(CODEGEN_SOURCES) $(VENV)/.installed
	$(GENERATE)
	@touch $@

gen: $(GEN_OUT) ## regenerate gen/ when its sources changed (make -B gen: always)

gen-check: $(VENV)/.installed ## regenerate gen/ unconditionally and fail if it differs from git (CI)
	$(GENERATE)
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo 'gen/ is stale: run make gen and commit'; exit 1; }

migrate: $(GEN_OUT) ## apply the database migrations (python -m server migrate)
	$(PY) -m server migrate

run: $(GEN_OUT) ## the server and Envoy locally (python -m server run)
	$(PY) -m server run

# Several replicas on PostgreSQL behind one Envoy (the database is created when missing).
CLUSTER_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/reconrouter
REPLICAS ?= 3
cluster: $(GEN_OUT) ## REPLICAS servers on PostgreSQL (CLUSTER_DATABASE_URL) behind one Envoy
	DATABASE_URL=$(CLUSTER_DATABASE_URL) $(PY) -m server cluster --replicas $(REPLICAS)

test: $(GEN_OUT) ## the test suite (pytest, with PYTEST_ARGS)
	$(PY) -m pytest $(PYTEST_ARGS)

# Hardening (docs/hardening.md). The normal suite runs both with small budgets (tests/hardening/).
# fuzz: schemathesis over every operation of gen/openapi.json through Envoy, FUZZ_EXAMPLES per
# operation (about 4 min at 500), plus the Hypothesis properties at HYPOTHESIS_EXAMPLES.
# soak: the mixed workload for SOAK_SECONDS (10 min); results in bench/results/soak-<ts>.json.
FUZZ_EXAMPLES ?= 500
HYPOTHESIS_EXAMPLES ?= 2000
SOAK_SECONDS ?= 600
fuzz: $(GEN_OUT) ## schemathesis + Hypothesis at full budgets (~4 min)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HYPOTHESIS_EXAMPLES=$(HYPOTHESIS_EXAMPLES) \
	  $(PY) -m pytest -s -p no:cacheprovider tests/hardening/test_fuzz.py tests/hardening/test_properties.py \
	  tests/hardening/test_edge_sweep.py \
	  -o timeout=3600 $(PYTEST_ARGS)

soak: $(GEN_OUT) ## the mixed workload for SOAK_SECONDS (10 min) on the real stack
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest -s tests/hardening/test_soak.py -o timeout=7200 $(PYTEST_ARGS)

# The benchmarks (docs/benchmarks.md), all through `python -m bench` (--help lists its options): the
# real stack on loopback ports, results in bench/results/ (ignored by git but for the reference runs
# the docs quote). SQLite unless BENCH_DATABASE_URL names a PostgreSQL server (each stack then gets a
# throwaway database there). bench ~10-15 min (1M rows), bench-quick ~2 min. E.g.
#   make bench BENCH_ARGS="--only 1,2 --no-profile"          some scenarios of the suite
#   make bench BENCH_ARGS="--only reads,bulk --dry-run"      what would run, without running it
bench: $(GEN_OUT) bench-tools ## the benchmark suite, every scenario and a profile (~10-15 min)
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: $(GEN_OUT) bench-tools ## the same scenarios, shorter runs (~2 min)
	$(PY) -m bench --quick $(BENCH_ARGS)

# One scenario alone, full plan with one repeat, no profile: results bench/results/<name>-<ts>.json.
bench-idempotency: $(GEN_OUT) ## scenario 4: first execution vs replay, key-less cost (BENCH_ARGS="--rounds 50")
	$(PY) -m bench idempotency $(BENCH_ARGS)

bench-dispatch: $(GEN_OUT) ## scenario 3: dispatch to slow stand-ins, 1 vs 8 deliveries per host (BENCH_ARGS="--rounds 20")
	$(PY) -m bench dispatch $(BENCH_ARGS)

bench-bulk: $(GEN_OUT) ## scenario 5: 50 GETs in one /v1/bulk vs one by one (BENCH_ARGS="--rounds 50")
	$(PY) -m bench bulk $(BENCH_ARGS)

# wrk (REST) and h2load (gRPC) from Debian, py-spy (the profile) from PyPI, each only when missing.
# Without wrk/h2load the bench falls back to its Python load driver (and says so in the results).
PY_SPY_VERSION ?= 0.4.3
bench-tools: $(VENV)/.installed ## install wrk, h2load and py-spy when missing
	@command -v wrk >/dev/null && command -v h2load >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk nghttp2-client >/dev/null; \
	} || echo "warning: wrk/h2load could not be installed: the Python load driver stands in" >&2
	@test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q py-spy==$(PY_SPY_VERSION) \
	  || echo "warning: py-spy could not be installed: the results will have no profile" >&2

lint: typecheck ## ruff check, format check and the type check
	$(VENV)/bin/ruff check server tests bench
	$(VENV)/bin/ruff format --check server tests bench

typecheck: $(GEN_OUT) ## mypy over server/ (pyproject.toml [tool.mypy]: adapters checked against the domain's ports)
	$(PY) -m mypy

fmt: $(VENV)/.installed ## ruff fix and format
	$(VENV)/bin/ruff check --fix server tests bench
	$(VENV)/bin/ruff format server tests bench

clean: ## remove .venv and var/
	rm -rf $(VENV) var
