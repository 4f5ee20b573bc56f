# Set-up and everyday commands. `make test` is the README's (and CI's) test command.
# Another interpreter gets its own environment: make test PYTHON=python3.10

PYTHON ?= python3
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d%d" % sys.version_info[:2])')
VENV ?= .venv/py$(PYVER)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TIMEOUT ?= 600

# lava-nc 0.10.0's dependencies, pinned to what is known good on Python 3.10 and 3.11.
# lava-nc itself is installed without dependency resolution: its wheel declares Python <3.11.
LAVA_DEPS := "numpy>=1.24.4,<2" "scipy>=1.10.1,<1.15" "scikit-learn>=1.5,<1.6" \
             "networkx<=2.8.7" "asteval>=0.9.31,<0.10"

.PHONY: venv demo test test-all bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0 $(LAVA_DEPS)
	$(PY) -m pip install --no-deps --ignore-requires-python lava-nc==0.10.0
	$(PY) -m pip install -e '.[test]' $(LAVA_DEPS)
	touch $@

demo: $(STAMP)
	$(VENV)/bin/lava-diffmod demo

test: $(STAMP)
	$(PY) -m pytest -q --timeout=$(TIMEOUT)

test-all: $(STAMP)
	$(PY) -m pytest -q --timeout=$(TIMEOUT) -m ''

bench: $(STAMP)
	$(PY) benchmarks/run_cpu.py

clean:
	rm -rf .venv build *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
