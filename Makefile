# One entry point for everything: the README's commands call these targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROTO_FILES := $(shell find proto -name '*.proto' | sort)

.PHONY: venv gen gen-check run cluster test lint fmt migrate clean

# The virtualenv is (re)built when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@# gen/ holds the generated `reconrouter` package; its modules import each other by proto package.
	$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/reconrouter_gen.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)/gen"
	touch $@

venv: $(VENV)/.installed

# Messages, stubs, .pyi and the descriptor set Envoy loads. Only this target writes gen/.
gen: $(VENV)/.installed
	$(PY) -m server.codegen $(PROTO_FILES)

# Fails when gen/ is not what a fresh `make gen` produces.
gen-check: gen
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo 'gen/ is stale: run make gen and commit'; exit 1; }

migrate: gen
	$(PY) -m server migrate

run: gen
	$(PY) -m server run

# Several replicas on PostgreSQL behind one Envoy (the database is created when missing).
CLUSTER_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/reconrouter
REPLICAS ?= 3
cluster: gen
	DATABASE_URL=$(CLUSTER_DATABASE_URL) $(PY) -m server cluster --replicas $(REPLICAS)

test: gen
	$(PY) -m pytest $(PYTEST_ARGS)

# Hardening (docs/hardening.md). The normal suite runs both with small budgets (tests/hardening/).
# fuzz: schemathesis over every operation of gen/openapi.json through Envoy, FUZZ_EXAMPLES per
# operation (about 4 min at 500), plus the Hypothesis properties at HYPOTHESIS_EXAMPLES.
# soak: the mixed workload for SOAK_SECONDS (10 min); results in bench/results/soak-<ts>.json.
FUZZ_EXAMPLES ?= 500
HYPOTHESIS_EXAMPLES ?= 2000
SOAK_SECONDS ?= 600
.PHONY: fuzz soak
fuzz: gen
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HYPOTHESIS_EXAMPLES=$(HYPOTHESIS_EXAMPLES) \
	  $(PY) -m pytest -s -p no:cacheprovider tests/hardening/test_fuzz.py tests/hardening/test_properties.py \
	  -o timeout=3600 $(PYTEST_ARGS)

soak: gen
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest -s tests/hardening/test_soak.py -o timeout=7200 $(PYTEST_ARGS)

# The benchmark suite (issue 7, docs/benchmarks.md): the real stack on loopback ports, every scenario,
# results in bench/results/<timestamp>.json and .md. SQLite unless BENCH_DATABASE_URL names a
# PostgreSQL server (each stack then gets a throwaway database there). bench ~10-15 min (1M rows),
# bench-quick ~2 min. E.g. BENCH_ARGS="--only 1,2" or "--no-profile".
.PHONY: bench bench-quick bench-tools
bench: gen bench-tools
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: gen bench-tools
	$(PY) -m bench --quick $(BENCH_ARGS)

# wrk (REST) and h2load (gRPC) from Debian, py-spy (the profile) from PyPI, each only when missing.
# Without wrk/h2load the bench falls back to its Python load driver (and says so in the results).
PY_SPY_VERSION ?= 0.4.3
bench-tools: $(VENV)/.installed
	@command -v wrk >/dev/null && command -v h2load >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk nghttp2-client >/dev/null; \
	} || echo "warning: wrk/h2load could not be installed: the Python load driver stands in" >&2
	@test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q py-spy==$(PY_SPY_VERSION) \
	  || echo "warning: py-spy could not be installed: the results will have no profile" >&2

# Idempotency: first execution vs replay of a 100-item bulk dispatch, and the cost of a key-less call
# (bench/idempotency.py; numbers land in bench/results/). E.g. BENCH_ARGS="--rounds 50".
.PHONY: bench-idempotency
bench-idempotency: gen
	$(PY) -m bench.idempotency $(BENCH_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check server tests bench
	$(VENV)/bin/ruff format --check server tests bench

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix server tests bench
	$(VENV)/bin/ruff format server tests bench

clean:
	rm -rf $(VENV) var

# 100-item bulk dispatch to the webhook and JIRA stand-ins, sequential vs pooled (bench/dispatch.py;
# numbers land in bench/results/). E.g. BENCH_ARGS="--rounds 20 --latency 0.02".
.PHONY: bench-dispatch
bench-dispatch: gen
	$(PY) -m bench.dispatch $(BENCH_ARGS)

# /v1/bulk: 50 GETs in one batch vs 50 sequential REST calls, and one sub-request vs a direct gRPC
# call (bench/bulk.py; numbers land in bench/results/). E.g. BENCH_ARGS="--rounds 50".
.PHONY: bench-bulk
bench-bulk: gen
	$(PY) -m bench.bulk $(BENCH_ARGS)
