# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv and installs the pinned versions from requirements.lock when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m asg_audit demo

# Headless Chromium (Debian's) opens the HTML reports in the browser tests: installed when
# missing (with sudo when not root), so `make test` works on a fresh machine.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# Tests run on one worker per core (2 here): `make test PYTEST_WORKERS=0` runs them in one process.
PYTEST_WORKERS ?= auto
test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check asg_audit tests benchmarks
	$(VENV)/bin/ruff format --check asg_audit tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	for b in benchmarks/[a-z]*.py; do $(PY) $$b || exit 1; done  # not the _helpers

# Re-pin after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip freeze --exclude-editable | grep -vi '^asg.audit' > requirements.lock

clean:
	rm -rf $(VENV) asg_audit.duckdb demo-output
