# axmon: the two commands a new user needs are `make demo` and `make test`.
# Both set up what they need: a virtual environment with the dependencies, and (through
# axmon itself) the Kafka jars from Maven Central and a local broker.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.axmon-installed

LOCK   := requirements.lock

.PHONY: help install lock system-deps test-deps demo dashboard test test-unit test-integration bench lint kafka-start kafka-stop schemas clean

help:
	@echo "make demo    run the main job on the local Kafka broker (provisioned on first use); ends with the dashboard's URL"
	@echo "make test    run the whole test suite (starts its own broker)"
	@echo "make dashboard   axmon serve over ./axmon.db: the dashboard at http://127.0.0.1:8321/"
	@echo "make bench   run the benchmarks"
	@echo "make lint    ruff and mypy"
	@echo "make lock    refresh requirements.lock (the exact versions make install uses)"
	@echo "make kafka-start / kafka-stop   the local broker by hand"

# The versions tested are pinned in $(LOCK) (a constraints file): a fresh machine installs them,
# not whatever is newest. pyproject.toml keeps the ranges the code accepts.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e ".[test,lint]"
	touch $(STAMP)

install: $(STAMP)

# Refresh $(LOCK): resolve pyproject.toml's ranges afresh in a scratch venv, write what it installed.
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet --upgrade pip
	$(VENV)-lock/bin/pip install --quiet -e ".[test,lint]"
	{ echo "# Exact versions that 'make install' uses (pip -c). Refresh with 'make lock'; Python 3.11."; \
	  $(VENV)-lock/bin/pip freeze --exclude-editable; } > $(LOCK)
	rm -rf $(VENV)-lock

# Java 17+ and Maven run the local broker; install them from Debian's packages when missing.
system-deps:
	@./scripts/ensure-java.sh

# The tests also drive the dashboard in Debian's headless Chromium, lint the Prometheus
# exposition with promtool (Debian's prometheus package), and run the store on PostgreSQL 15
# (Debian's postgresql package).
test-deps: system-deps
	@./scripts/ensure-chromium.sh
	@./scripts/ensure-promtool.sh
	@./scripts/ensure-postgres.sh

# ends by leaving axmon serve running over ./axmon.db in the background: it prints the URL and how to stop it
demo: install system-deps
	$(BIN)/axmon demo

# the dashboard over ./axmon.db (or AXMON_DB): http://127.0.0.1:8321/ ; Ctrl-C stops it
dashboard: install
	$(BIN)/axmon serve

test: install test-deps
	$(BIN)/python -m pytest

test-unit: install
	@./scripts/ensure-postgres.sh
	$(BIN)/python -m pytest tests/unit

test-integration: install test-deps
	$(BIN)/python -m pytest tests/integration

bench: install system-deps
	$(BIN)/python -m bench --write BENCHMARKS.md

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

kafka-start: install system-deps
	$(BIN)/axmon kafka start

kafka-stop: install
	$(BIN)/axmon kafka stop

schemas: install
	$(BIN)/python -m schemas.jsonschema

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
