# Two commands on a fresh clone: `make demo` and `make test`. Both create/reuse .venv (Python 3.10 + pinned stack).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Threads for torch on CPU; these machines have 2 cores. OpenMP's default spin-waiting made 2-thread training
# ~10x slower whenever another process shared the cores (benchmarks/results/lt_shapes_demo.md); threads sleep instead.
export OMP_NUM_THREADS ?= 2
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup test demo clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	@PY310=$$(tools/find_python310.sh) || exit 1; \
	 [ -x $(PY) ] || $$PY310 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -c "import detectron2, detectron2._C, lt_detectron; print('environment ok: detectron2', detectron2.__version__)"
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) tools/demo.py

clean-venv:
	rm -rf $(VENV)
