# The two quickstart commands: `make demo` runs the flagship example, `make test` runs the
# checks and the tests. Both create .venv/ (core, every plugin, dev tools; editable) if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PLUGINS := $(sort $(dir $(wildcard transports/*/pyproject.toml connectors/*/pyproject.toml)))
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(addsuffix pyproject.toml,$(PLUGINS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" $(addprefix -e ./,$(PLUGINS))
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/spacebeaver/bridge.py --scripted

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test: lint
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

bench: $(STAMP)
	$(PY) bench/run.py all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
