# The two commands: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PYTEST_ARGS ?=

.PHONY: run test install tools lint fmt unit bench clean

## run: install the locked environment, then serve the production configuration on :8000
run: install
	$(VENV)/bin/gunicorn -c gunicorn.conf.py

## test: install everything, then run every check (lint, unit, integration, chart, image...)
test: tools lint
	@bash scripts/cluster/prebuild.sh
	$(VENV)/bin/pytest $(PYTEST_ARGS)

install:
	@bash scripts/bootstrap.sh

tools: install
	@for script in scripts/tools/*.sh; do bash "$$script" || exit 1; done

lint: install
	$(VENV)/bin/ruff check app tests loadtests observability bench gunicorn.conf.py
	$(VENV)/bin/ruff format --check app tests loadtests observability bench gunicorn.conf.py

fmt: install
	$(VENV)/bin/ruff check --fix app tests loadtests observability bench gunicorn.conf.py
	$(VENV)/bin/ruff format app tests loadtests observability bench gunicorn.conf.py

unit: install
	$(VENV)/bin/pytest tests/unit

## bench: hardened vs bare FastAPI vs raw ASGI under wrk, alternating rounds
bench: tools
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache

-include mk/*.mk
