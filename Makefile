# axmon: the two commands a new user needs are `make demo` and `make test`.
# Both set up what they need: a virtual environment with the dependencies, and (through
# axmon itself) the Kafka jars from Maven Central and a local broker.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.axmon-installed

.PHONY: help install system-deps test-deps demo dashboard test test-unit test-integration bench lint kafka-start kafka-stop schemas clean

help:
	@echo "make demo    run the main job on the local Kafka broker (provisioned on first use)"
	@echo "make test    run the whole test suite (starts its own broker)"
	@echo "make dashboard   axmon serve over ./axmon.db: the dashboard at http://127.0.0.1:8321/"
	@echo "make bench   run the benchmarks"
	@echo "make kafka-start / kafka-stop   the local broker by hand"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Java 17+ and Maven run the local broker; install them from Debian's packages when missing.
system-deps:
	@./scripts/ensure-java.sh

# The tests also drive the dashboard in Debian's headless Chromium, and lint the Prometheus
# exposition with promtool (Debian's prometheus package).
test-deps: system-deps
	@./scripts/ensure-chromium.sh
	@./scripts/ensure-promtool.sh

demo: install system-deps
	$(BIN)/axmon demo

# the dashboard over ./axmon.db (or AXMON_DB): http://127.0.0.1:8321/ ; Ctrl-C stops it
dashboard: install
	$(BIN)/axmon serve

test: install test-deps
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install test-deps
	$(BIN)/python -m pytest tests/integration

bench: install system-deps
	$(BIN)/python -m bench --write BENCHMARKS.md

lint: install
	$(BIN)/pip install --quiet mypy
	$(BIN)/mypy

kafka-start: install system-deps
	$(BIN)/axmon kafka start

kafka-stop: install
	$(BIN)/axmon kafka stop

schemas: install
	$(BIN)/python -m schemas.jsonschema

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
