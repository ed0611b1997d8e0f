# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create (once) and reuse the virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build here; a GPU user sets e.g. TORCH_SPEC="torch==2.13.0" with their own index, or installs torch first.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test test-all default-model results clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,ui]"
	# aisfx (the offline FAD embedder's weights) pins old librosa/numpy: install it without its pins.
	$(PY) -m pip install --quiet --no-deps "aisfx==0.1.2"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/action2sound demo --out out/demo

test: venv
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m ""

# Retrain the embedded default model (small preset on the procedural benchmark; ~45 min on 2 CPU cores).
default-model: venv
	scripts/default_model.sh

# The reproduction study (docs/RESULTS.md); needs the runs of default-model.
results: venv
	scripts/results.sh

clean:
	rm -rf out .pytest_cache
