# One entry point for everything: the README's commands call these targets. `make` alone lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROTO_FILES := $(shell find proto -name '*.proto' | sort)

.PHONY: help venv gen gen-check migrate run cluster test fuzz soak bench bench-quick bench-tools bench-idempotency bench-dispatch bench-bulk lint typecheck buf-lint buf-breaking buf-baseline openapi-lint docs-assets fmt clean
.DEFAULT_GOAL := help
# A recipe that fails leaves no half-written target behind (gen/reconrouter.pb, the $(VENV) stamps).
.DELETE_ON_ERROR:

help: ## this list
	@echo 'usage: make TARGET [VAR=value ...]'
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo 'variables: PYTEST_ARGS, BENCH_ARGS (python -m bench --help), BENCH_DATABASE_URL, BENCH_POSTGRES_URL, CLUSTER_DATABASE_URL,'
	@echo '  REPLICAS, FUZZ_EXAMPLES, HYPOTHESIS_EXAMPLES, SOAK_SECONDS, BUF_AGAINST, BUF_VERSION,'
	@echo '  SWAGGER_UI_VERSION, VENV'

# The virtualenv is (re)built when pyproject.toml changes. `make run` needs only the runtime
# dependencies ($(RUNTIME)); test, lint and the hardening/bench targets add the dev extras ($(DEV)).
# pip runs without -q so a first run shows what it is fetching instead of going silent.
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed
$(RUNTIME): pyproject.toml
	@test -x $(PY) || { echo '==> creating the virtualenv $(VENV)'; python3 -m venv $(VENV); }
	@echo '==> installing the runtime dependencies into $(VENV) (first run only, about a minute)'
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar on -e .
	@# gen/ holds the generated `reconrouter` package; its modules import each other by proto package.
	$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/reconrouter_gen.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)/gen"
	touch $@

$(DEV): $(RUNTIME)
	@echo '==> installing the development extras (tests, lint, fuzzing) into $(VENV)'
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	touch $@

venv: $(DEV) ## the virtualenv in .venv with the dev extras (rebuilt when pyproject.toml changes)

# Messages, stubs, .pyi, the descriptor set Envoy loads and gen/openapi.json; only these rules write
# gen/. gen/reconrouter.pb stands for all of it: regenerated when a .proto, the generator (with the
# server modules it reads for the OpenAPI document) or the virtualenv is newer.
GEN_OUT := gen/reconrouter.pb
CODEGEN_SOURCES := $(wildcard server/codegen/*.py server/contract/*.py server/domain/*.py server/services/exceptions.py)
GENERATE = $(PY) -m server.codegen $(PROTO_FILES)

$(GEN_OUT): $(PROTO_FILES) $(CODEGEN_SOURCES) $(RUNTIME)
	$(GENERATE)
	@touch $@

gen: $(GEN_OUT) ## regenerate gen/ when its sources changed (make -B gen: always)

gen-check: $(RUNTIME) ## regenerate gen/ unconditionally and fail if it differs from git (CI)
	$(GENERATE)
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo 'gen/ is stale: run make gen and commit'; exit 1; }

# /docs: Swagger UI's files from the npm registry (swagger-ui-dist), installed here once and served
# by Envoy (no network access at run time). Without npm (or the registry), /docs says how to install
# them and everything else runs.
SWAGGER_UI_VERSION ?= 5.35.0
DOCS_STAMP := $(VENV)/swagger-ui/.installed-$(SWAGGER_UI_VERSION)
$(DOCS_STAMP):
	@if command -v npm >/dev/null; then \
	  echo '==> installing Swagger UI $(SWAGGER_UI_VERSION) for /docs from the npm registry (swagger-ui-dist)'; \
	  npm install --no-audit --no-fund --loglevel=error --prefix $(VENV)/swagger-ui swagger-ui-dist@$(SWAGGER_UI_VERSION) \
	    && touch $@ \
	    || echo 'warning: Swagger UI could not be installed: /docs will say how to (make docs-assets)' >&2; \
	else \
	  echo 'warning: npm not found: /docs will only say how to install the API reference (make docs-assets)' >&2; \
	fi

docs-assets: $(DOCS_STAMP) ## Swagger UI for /docs (npm package swagger-ui-dist into .venv/swagger-ui)

migrate: $(GEN_OUT) ## apply the database migrations (python -m server migrate)
	$(PY) -m server migrate

run: $(GEN_OUT) docs-assets ## the server and Envoy locally (python -m server run)
	$(PY) -m server run

# Several replicas on PostgreSQL behind one Envoy (the database is created when missing).
CLUSTER_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/reconrouter
REPLICAS ?= 3
cluster: $(GEN_OUT) docs-assets ## REPLICAS servers on PostgreSQL (CLUSTER_DATABASE_URL) behind one Envoy
	DATABASE_URL=$(CLUSTER_DATABASE_URL) $(PY) -m server cluster --replicas $(REPLICAS)

test: $(GEN_OUT) $(DEV) docs-assets ## the test suite (pytest, with PYTEST_ARGS)
	$(PY) -m pytest $(PYTEST_ARGS)

# Hardening (docs/hardening.md). The normal suite runs both with small budgets (tests/hardening/).
# fuzz: schemathesis over every operation of gen/openapi.json through Envoy, FUZZ_EXAMPLES per
# operation: the Python-driven run (test_fuzz.py) and `schemathesis run` with its default checks
# (test_schemathesis_run.py), plus the Hypothesis properties at HYPOTHESIS_EXAMPLES.
# soak: the mixed workload for SOAK_SECONDS (10 min); results in bench/results/soak-<ts>.json.
FUZZ_EXAMPLES ?= 500
HYPOTHESIS_EXAMPLES ?= 2000
SOAK_SECONDS ?= 600
fuzz: $(GEN_OUT) $(DEV) ## schemathesis + Hypothesis at full budgets (~4 min)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HYPOTHESIS_EXAMPLES=$(HYPOTHESIS_EXAMPLES) \
	  $(PY) -m pytest -s -p no:cacheprovider tests/hardening/test_fuzz.py tests/hardening/test_properties.py \
	  tests/hardening/test_schemathesis_run.py \
	  tests/hardening/test_edge_sweep.py \
	  -o timeout=3600 $(PYTEST_ARGS)

soak: $(GEN_OUT) $(DEV) ## the mixed workload for SOAK_SECONDS (10 min) on the real stack
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest -s tests/hardening/test_soak.py -o timeout=7200 $(PYTEST_ARGS)

# The benchmarks (docs/benchmarks.md), all through `python -m bench` (--help lists its options): the
# real stack on loopback ports, results in bench/results/ (ignored by git but for the reference runs
# the docs quote). SQLite unless BENCH_DATABASE_URL names a PostgreSQL server (each stack then gets a
# throwaway database there). bench ~15 min per database (1M rows), bench-quick ~2-3 min per database. E.g.
#   make bench BENCH_ARGS="--only 1,2 --no-profile"          some scenarios of the suite
#   make bench BENCH_ARGS="--only reads,bulk --dry-run"      what would run, without running it
# make bench and bench-quick run the plan on SQLite, then on this PostgreSQL server (a throwaway
# database per stack; skipped with a note when it does not answer; BENCH_POSTGRES_URL= turns it off).
BENCH_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
BENCH_ALSO = $(if $(BENCH_POSTGRES_URL),--also '$(BENCH_POSTGRES_URL)')

bench: $(GEN_OUT) $(DEV) bench-tools ## the benchmark suite on SQLite then PostgreSQL, a profile (~30-35 min)
	$(PY) -m bench $(BENCH_ALSO) $(BENCH_ARGS)

bench-quick: $(GEN_OUT) $(DEV) bench-tools ## the same scenarios, shorter runs, both databases (~5 min)
	$(PY) -m bench --quick $(BENCH_ALSO) $(BENCH_ARGS)

# One scenario alone, full plan with one repeat, no profile: results bench/results/<name>-<ts>.json.
bench-idempotency: $(GEN_OUT) $(DEV) ## scenario 4: first execution vs replay, key-less cost (BENCH_ARGS="--rounds 50")
	$(PY) -m bench idempotency $(BENCH_ARGS)

bench-dispatch: $(GEN_OUT) $(DEV) ## scenario 3: dispatch to slow stand-ins, 1 vs 8 deliveries per host (BENCH_ARGS="--rounds 20")
	$(PY) -m bench dispatch $(BENCH_ARGS)

bench-bulk: $(GEN_OUT) $(DEV) ## scenario 5: 50 GETs in one /v1/bulk vs one by one (BENCH_ARGS="--rounds 50")
	$(PY) -m bench bulk $(BENCH_ARGS)

# wrk (REST) and h2load (gRPC) from Debian, py-spy (the profile) from PyPI, each only when missing.
# Without wrk/h2load the bench falls back to its Python load driver (and says so in the results).
PY_SPY_VERSION ?= 0.4.3
bench-tools: $(DEV) ## install wrk, h2load and py-spy when missing
	@command -v wrk >/dev/null && command -v h2load >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk nghttp2-client >/dev/null; \
	} || echo "warning: wrk/h2load could not be installed: the Python load driver stands in" >&2
	@test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q py-spy==$(PY_SPY_VERSION) \
	  || echo "warning: py-spy could not be installed: the results will have no profile" >&2

lint: typecheck buf-lint buf-breaking openapi-lint ## ruff check, format check, the type check, buf lint and buf breaking, openapi-lint
	$(VENV)/bin/ruff check server tests bench
	$(VENV)/bin/ruff format --check server tests bench

# buf (buf.yaml) from the npm registry (@bufbuild/buf ships the Linux binary), into $(VENV)/buf.
# It reads the descriptor set make gen writes; --path keeps it to our files (buf.yaml says why).
BUF_VERSION ?= 1.75.0
BUF := $(VENV)/buf/node_modules/.bin/buf
# buf breaking compares with the contract as last published: the descriptor set kept in
# BUF_BASELINE (make buf-baseline records the current one when a version is released). With
# BUF_AGAINST=<git revision> it compares with that revision's committed gen/reconrouter.pb instead.
BUF_BASELINE ?= proto/baseline/reconrouter.binpb
BUF_AGAINST ?=
$(BUF):
	@echo '==> installing buf $(BUF_VERSION) from the npm registry (@bufbuild/buf)'
	npm install --no-audit --no-fund --loglevel=error --prefix $(VENV)/buf @bufbuild/buf@$(BUF_VERSION)

buf-lint: $(GEN_OUT) $(BUF) ## buf lint (STANDARD; the deliberate exceptions are in buf.yaml)
	$(BUF) lint '$(GEN_OUT)#format=binpb' --config buf.yaml --path reconrouter

buf-breaking: $(GEN_OUT) $(BUF) ## buf breaking (FILE) against the published contract (BUF_BASELINE, or BUF_AGAINST=<rev>)
	@tmp=$$(mktemp --suffix=.pb); trap 'rm -f "$$tmp"' EXIT; \
	if [ -n '$(BUF_AGAINST)' ]; then \
	  against=$$(git rev-parse --verify -q '$(BUF_AGAINST)^{commit}' || git rev-parse --verify -q 'origin/$(BUF_AGAINST)^{commit}') \
	    || { echo 'buf-breaking: no revision $(BUF_AGAINST) (nor origin/$(BUF_AGAINST))' >&2; exit 2; }; \
	  git show "$$against:$(GEN_OUT)" > "$$tmp" \
	    || { echo "buf-breaking: $(GEN_OUT) is not in $(BUF_AGAINST) ($$against)" >&2; exit 2; }; \
	  echo "buf breaking against $(BUF_AGAINST) ($$against)"; \
	else cp '$(BUF_BASELINE)' "$$tmp"; echo 'buf breaking against the published contract ($(BUF_BASELINE))'; fi; \
	$(BUF) breaking '$(GEN_OUT)#format=binpb' --against "$$tmp#format=binpb" --config buf.yaml --path reconrouter

buf-baseline: $(GEN_OUT) ## record the current contract as the published one buf-breaking protects (on a release)
	cp $(GEN_OUT) $(BUF_BASELINE)

# gen/openapi.json under Redocly's `recommended` and Spectral's `spectral:oas` rulesets (.spectral.yaml):
# errors fail, warnings are printed (docs/hardening.md lists the ones left). Both from the npm registry,
# into $(VENV)/openapi-lint.
REDOCLY_VERSION ?= 2.77.0
SPECTRAL_VERSION ?= 6.16.3
OPENAPI_LINT := $(VENV)/openapi-lint/.installed-$(REDOCLY_VERSION)-$(SPECTRAL_VERSION)
$(OPENAPI_LINT):
	@echo '==> installing Redocly CLI $(REDOCLY_VERSION) and Spectral $(SPECTRAL_VERSION) from the npm registry'
	npm install --no-audit --no-fund --loglevel=error --prefix $(VENV)/openapi-lint \
	  @redocly/cli@$(REDOCLY_VERSION) @stoplight/spectral-cli@$(SPECTRAL_VERSION)
	touch $@

openapi-lint: $(GEN_OUT) $(OPENAPI_LINT) ## Redocly (recommended) and Spectral (spectral:oas) over gen/openapi.json
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
	  $(VENV)/openapi-lint/node_modules/.bin/redocly lint --extends recommended gen/openapi.json
	$(VENV)/openapi-lint/node_modules/.bin/spectral lint --ruleset .spectral.yaml --fail-severity error gen/openapi.json

typecheck: $(GEN_OUT) $(DEV) ## mypy over server/ (pyproject.toml [tool.mypy]: adapters checked against the domain's ports)
	$(PY) -m mypy

fmt: $(DEV) ## ruff fix and format
	$(VENV)/bin/ruff check --fix server tests bench
	$(VENV)/bin/ruff format server tests bench

clean: ## remove .venv and var/
	rm -rf $(VENV) var
