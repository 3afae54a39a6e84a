# Two supported stacks (docs/install.md):
#   STACK=quick   (default) Python 3.10, torch 2.3.1, the sal-detectron2 wheel; CPU; venv .venv
#   STACK=current           Python 3.12, torch 2.11 / torchvision 0.26, Detectron2 built from source at D2_COMMIT
#                           (from $D2_SOURCE); the install for GPU machines; venv .venv-current
# Fresh clone: `make demo` and `make test` (add STACK=current for the second stack). Both install from the stack's
# lock file (requirements/<stack>.lock, every package pinned); `make lock` regenerates it from the intent file.
SHELL := /bin/bash
STACK ?= quick
ifeq ($(STACK),quick)
  VENV ?= .venv
  PYVER := 3.10
  INTENT := requirements.txt
else ifeq ($(STACK),current)
  VENV ?= .venv-current
  PYVER := 3.12
  INTENT := requirements/current.txt
else
  $(error STACK must be 'quick' or 'current', not '$(STACK)')
endif
LOCK  := requirements/$(STACK).lock
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Detectron2 for the current stack: a pinned upstream commit; D2_SOURCE may point at a tarball or a checkout of it.
D2_COMMIT ?= 02b5c4e295e990042a714712c21dc79b731e8833
D2_SOURCE ?= git+https://github.com/facebookresearch/detectron2.git@$(D2_COMMIT)
# Threads for torch on CPU; these machines have 2 cores. The thread count is part of the numbers: a run reproduces
# a recorded table only with the same count (docs/results.md, "Reproducible numerics").
export OMP_NUM_THREADS ?= 2
# OMP_WAIT_POLICY=PASSIVE (sleeping OpenMP threads) and the pinned CPU kernel ISA are set by every entry point and the
# tests before torch loads (lt_detectron/utils/numerics.py), not here: `python tools/...` gets them too.
# `make demo LT_NATIVE_ISA=1` (make passes command-line variables on) keeps the CPU's native kernels instead.
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-x tests/test_losses_properties.py"`.
PYTEST_ARGS ?= tests

.PHONY: setup test demo lock lint format gpu-carry clean-venv

setup: $(STAMP)

$(STAMP): $(LOCK) setup.py
	@PYBIN=$$(tools/find_python.sh $(PYVER)) || exit 1; \
	 [ -x $(PY) ] || $$PYBIN -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r $(LOCK)
ifeq ($(STACK),current)
	tools/install_detectron2.sh $(PY) "$(D2_SOURCE)"
endif
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -c "import detectron2, detectron2._C, lt_detectron, torch; \
	  print('environment ok: torch', torch.__version__, 'detectron2', detectron2.__version__)"
	tools/lock.sh check $(PY) $(LOCK)
	@touch $(STAMP)

# pytest exits 5 when it collected nothing (a wrong path or filter): a test run that tested nothing fails loudly.
test: setup
	@rc=0; $(PY) -m pytest -q $(PYTEST_ARGS) || rc=$$?; \
	 if [ $$rc = 5 ]; then echo "error: pytest collected no tests (STACK=$(STACK), PYTEST_ARGS='$(PYTEST_ARGS)')." \
	   "Fix: check the paths and -k/-m filters." >&2; fi; exit $$rc

demo: setup
	$(PY) tools/demo.py

# Regenerate the lock of $(STACK): a fresh virtual environment from the intent file, then pip freeze.
lock:
	@PYBIN=$$(tools/find_python.sh $(PYVER)) || exit 1; \
	 rm -rf $(VENV)-lock && $$PYBIN -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install -q --upgrade pip
	$(VENV)-lock/bin/python -m pip install -q -r $(INTENT)
ifeq ($(STACK),current)
	D2_WITH_DEPS=1 D2_CONSTRAINTS=$(INTENT) tools/install_detectron2.sh $(VENV)-lock/bin/python "$(D2_SOURCE)"
endif
	tools/lock.sh freeze $(VENV)-lock/bin/python $(LOCK) \
	  "Stack '$(STACK)': exact versions of every package installed from $(INTENT)$(if $(filter current,$(STACK)), and Detectron2 $(D2_COMMIT)'s dependencies,). Used by make setup STACK=$(STACK)."
	rm -rf $(VENV)-lock

# Style: the same checks as .ci/run.
lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# What a device call carries for benchmarks/gpu_check.sh (docs/install.md, "GPU machine").
gpu-carry:
	D2_SOURCE="$(D2_SOURCE)" benchmarks/gpu_check.sh --prepare

clean-venv:
	rm -rf $(VENV)
