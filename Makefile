# Two commands matter: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch is pinned here (a local CPU wheel on our machines); pyproject.toml only states a range.
TORCH_PIN ?= torch==2.13.0
DEMO_OUT  ?= out/demo

.PHONY: setup demo test test-slow lint kernels clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m qvggt_deploy demo --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -q -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow

# ruff (rules in pyproject.toml) and the import contracts (.importlinter: no package cycle, no
# import from a lower layer to a higher one). CI runs it after `make test`.
lint: setup
	$(PY) -m ruff check .
	PYTHONPATH=. $(VENV)/bin/lint-imports --no-cache

kernels:
	$(MAKE) -C kernels

clean:
	rm -rf out build *.egg-info kernels/build
