# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create (once) and reuse the virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build here; a GPU user sets e.g. TORCH_SPEC="torch==2.13.0" with their own index, or installs torch first.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test test-all clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/action2sound demo --out out/demo

test: venv
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m ""

clean:
	rm -rf out .pytest_cache
