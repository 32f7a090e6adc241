# Two commands a newcomer types: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: test demo venv lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

## make test: the whole suite against real redis-server, ZooKeeper and nutcracker
test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	$(VENV)/bin/ruff check pyproxy tests benchmarks
	$(VENV)/bin/mypy pyproxy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
