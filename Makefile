# The two commands of the README: `make run` and `make test`.
# Both create or refresh the virtual environment in .venv first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Reinstall whenever pyproject.toml changes.
INSTALLED := $(VENV)/.installed

.PHONY: run backup restore test test-fast test-contract lint format docs docs-build docs-reference venv bench demo lock clean

run: $(INSTALLED)
	$(PY) -m services.launcher

# A backup of the embedded database (the stack running or not), and restoring one into
# the stopped stack: make restore BACKUP=data/backups/emogo-backup-... (docs/backups.md).
backup: $(INSTALLED)
	$(PY) -m services.launcher backup

restore: $(INSTALLED)
	@test -n "$(BACKUP)" || { echo "usage: make restore BACKUP=data/backups/emogo-backup-..."; exit 2; }
	$(PY) -m services.launcher restore "$(BACKUP)"

# The tests run in several workers (pytest-xdist), each with its own database server
# and session stack, each taking whole modules (a module's own stack starts once), the
# long modules first (tests/conftest.py). Three keep two cores busy: much of a test's
# time is spent waiting on processes. PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 3
PYTEST := $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Everything CI checks: lint (ruff, the import contract, types), the docs site, then
# every test, the browser's and the bounded contract run's included.
test: lint docs-build
	scripts/ensure-chromium
	scripts/ensure-tus-js-client
	$(PYTEST)

# The inner loop: unit and in-process tests, no browser, no contract run, no stack
# restarts or fault injection.
test-fast: $(INSTALLED)
	$(PYTEST) -m "not slow and not browser and not contract"

# The long contract fuzz (a time budget per document) that `make test` bounds by examples.
test-contract: $(INSTALLED)
	EMOGO_CONTRACT_MAX_TIME=45 $(PYTEST) -m contract

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

format: $(INSTALLED)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The docs site (mkdocs.yml): served with live reload, or built as `make test` does.
docs: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --dev-addr 127.0.0.1:8008

docs-build: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

# The reference pages made from the code (held to it by tests/test_docs.py).
docs-reference: $(INSTALLED)
	$(PY) -m services.gateway.codebook_documents > docs/codebook.md

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
	$(PY) bench/audit_append.py
	$(PY) bench/connection_limits.py
	$(PY) bench/scoped_auth.py
	$(PY) bench/access_line.py
	$(PY) bench/embedded_writes.py
	$(PY) bench/embedded_settings.py --rounds 1
	$(PY) bench/soak.py --minutes 3

venv: $(INSTALLED)

# requirements.lock: the exact, hash-checked dependencies the Docker image installs;
# requirements-dev.lock: the same versions plus the dev extras, which `make test`
# installs. Run after changing the dependencies in pyproject.toml; renews both.
LOCK_OPTIONS := --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links
lock: $(INSTALLED)
	$(PY) -m pip install --quiet pip-tools
	$(PY) -m piptools compile $(LOCK_OPTIONS) --output-file requirements.lock pyproject.toml
	$(PY) -m piptools compile $(LOCK_OPTIONS) --extra dev --constraint requirements.lock \
		--output-file requirements-dev.lock pyproject.toml

$(INSTALLED): pyproject.toml requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "EmoGo needs Python 3.11 or newer; found " + sys.version.split()[0] + " (set PYTHON=/path/to/python3.11)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(INSTALLED)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
