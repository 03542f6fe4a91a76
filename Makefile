# The two commands of the README: `make run` and `make test`.
# Both create or refresh the virtual environment in .venv first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Reinstall whenever pyproject.toml changes.
INSTALLED := $(VENV)/.installed

.PHONY: run test lint format venv bench demo lock clean

run: $(INSTALLED)
	$(PY) -m services.launcher

test: $(INSTALLED)
	$(PY) -m ruff check .
	scripts/ensure-chromium
	scripts/ensure-tus-js-client
	$(PY) -m pytest

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(INSTALLED)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Populates the stack `make run` started: a week of five participants and ten vlogs.
# A study with five enrolled participants, then a week of their data sent with their
# own tokens: the path a real study takes (see docs/studies.md).
demo: $(INSTALLED)
	$(PY) -m generators enrol --study demo --name "Demo study" --participants 5 --top-up
	$(PY) -m generators demo --study demo

bench: $(INSTALLED)
	$(PY) bench/gateway_overhead.py
	$(PY) bench/ingest.py
	$(PY) bench/media.py
	$(PY) bench/export.py
	$(PY) bench/audit.py
	$(PY) bench/connection_limits.py
	$(PY) bench/scoped_auth.py
	$(PY) bench/access_line.py
	$(PY) bench/embedded_writes.py

venv: $(INSTALLED)

# requirements.lock: the exact, hash-checked dependencies the Docker image installs.
# Run after changing the dependencies in pyproject.toml.
lock: $(INSTALLED)
	$(PY) -m pip install --quiet pip-tools
	$(PY) -m piptools compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "EmoGo needs Python 3.11 or newer; found " + sys.version.split()[0] + " (set PYTHON=/path/to/python3.11)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(INSTALLED)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
