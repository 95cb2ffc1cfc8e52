# Two commands on a fresh machine:
#   make run   - set up .venv, migrate, seed the demo, serve web + Celery worker + beat, DEBUG off
#                (a process that dies is restarted; Ctrl-C stops all)
#   make test  - the whole suite (SQLite and embedded defaults unless DATABASE_URL / REDIS_URL are set)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PORT ?= 8000

.PHONY: run test install lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" ./scripts/run.sh

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The benchmarks against PostgreSQL and Redis, one after another (see README, "Performance"):
# validate's throughput, then validate beside the Cerbos PDP (installs Cerbos from npm on first use).
# One alone: make bench BENCHMARKS=validate_vs_cerbos
BENCHMARKS ?= validate_throughput validate_vs_cerbos
bench: $(STAMP)
	@set -e; for name in $(BENCHMARKS); do \
		echo "== benchmarks/$$name.py"; \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/$$name.py; \
	done

clean:
	rm -rf $(VENV) var
