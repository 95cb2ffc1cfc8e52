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

# Every benchmark against PostgreSQL and Redis, one after another, each its own load process, then
# the table of every goal, met or not (benchmarks/run_all.py; README "Performance"). About an hour.
# Some alone: make bench BENCHMARKS="validate_vs_cerbos multi_node"
BENCHMARKS ?=
bench: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/run_all.py $(if $(BENCHMARKS),--only "$(BENCHMARKS)")

clean:
	rm -rf $(VENV) var
