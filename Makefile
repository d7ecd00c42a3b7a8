# Phonefleet: `make run` starts everything, `make test` checks everything.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
HOST   ?= 127.0.0.1
PHONES ?= 0

.PHONY: run test lint format migrate worker bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py bootstrap_demo --port $(PORT)
	@bash -c 'trap "trap - TERM; kill 0" INT TERM EXIT; \
	  export PROMETHEUS_MULTIPROC_DIR="$${PROMETHEUS_MULTIPROC_DIR:-$(CURDIR)/var/metrics}"; \
	  $(VENV)/bin/daphne --bind $(HOST) --port $(PORT) --websocket_connect_timeout 30 --access-log /dev/null config.asgi:application & \
	  if [ -n "$$REDIS_URL" ]; then $(PY) manage.py worker & fi; \
	  if [ "$(PHONES)" -gt 0 ]; then \
	    $(PY) -m agent --server http://$(HOST):$(PORT) --pin "$$($(PY) manage.py bootstrap_demo --json | $(PY) -c "import json,sys; print(json.load(sys.stdin)[\"pin\"])")" --count $(PHONES) --backend simulate --token-file var/agent/demo-phone.json & \
	  fi; \
	  wait'

test: $(VENV)/.installed lint
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	@$(PY) manage.py check --fail-level ERROR  # a bad setting stops here with its sentence
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports --no-cache

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --noinput

worker: $(VENV)/.installed
	$(PY) manage.py worker

bench: $(VENV)/.installed
	$(PY) bench/send.py

clean:
	rm -rf $(VENV) var
