# One entry point for everything: the README's commands call these targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROTO_FILES := $(shell find proto -name '*.proto' | sort)

.PHONY: venv gen gen-check run test lint fmt migrate clean

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
	$(PY) -m server.tools.codegen $(PROTO_FILES)

# Fails when gen/ is not what a fresh `make gen` produces.
gen-check: gen
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo 'gen/ is stale: run make gen and commit'; exit 1; }

migrate: gen
	$(PY) -m server migrate

run: gen
	$(PY) -m server run

test: gen
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check server tests
	$(VENV)/bin/ruff format --check server tests

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix server tests
	$(VENV)/bin/ruff format server tests

clean:
	rm -rf $(VENV) var
