# Two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv itself,
# and does nothing more when pyproject.toml and constraints.txt have not changed.
# `make demo` writes into $(SCRATCH) (git-ignored); only `make reference` rewrites the committed
# reference run in $(REFERENCE).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# TORCH=cpu (`make demo TORCH=cpu`) makes .venv with the CPU builds of torch and torchvision, at
# constraints.txt's versions, from PyTorch's CPU wheel index, instead of PyPI's CUDA build and its
# nvidia-* wheels. It applies when .venv is set up: `make clean` first to change an existing one.
TORCH ?=
CPU_WHEELS ?= https://download.pytorch.org/whl/cpu
ifneq ($(filter-out cpu,$(TORCH)),)
$(error TORCH is cpu or unset, not '$(TORCH)')
endif

# The GPU machine (docs/gpu-validation.md, "Running the validation on a GPU") has Python 3.12 with torch, no venv and no
# package index. `make gpu-wheels` here puts the wheels it lacks into $(WHEELS)/; there, `make gpu-install`
# installs them and this tree into $(SITE), with $(GPU_PYTHON).
WHEELS := .whl
SITE ?= /tmp/wavemix-site
GPU_PYTHON ?= python3
# test-gpu and validate-gpu run in .venv, as `make test` does, unless there is no .venv but there are
# wheels: the GPU machine. There they run $(GPU_PYTHON) on $(SITE). RUNTIME=venv or RUNTIME=site forces one.
RUNTIME ?= $(if $(wildcard $(PY)),venv,$(if $(wildcard $(WHEELS)/*.whl),site,venv))
ifeq ($(RUNTIME),site)
# PYTHONSAFEPATH keeps the source folder wavemix_profile/, which lacks the mapped `models`, from shadowing
# the installed package (`python -m` puts the current folder first); worker processes inherit it.
RUN := env PYTHONSAFEPATH=1 PYTHONPATH=$(SITE) $(GPU_PYTHON)
RUN_NEEDS := gpu-install
else ifeq ($(RUNTIME),venv)
RUN := $(PY)
RUN_NEEDS := $(STAMP)
else
$(error RUNTIME is venv or site, not '$(RUNTIME)')
endif
# validate-gpu with PACK=FILE stops validate after LIMIT seconds and packs what it wrote under reports/
# into FILE; keep LIMIT about 60 s under the device call's limit.
LIMIT ?= 540
# Where `make demo` writes (git-ignored), and the committed reference run that `make reference` rewrites:
# this project's 2-core CPU machine's. On another machine, name another folder: REFERENCE=reports/NAME.
SCRATCH ?= reports/local
REFERENCE ?= reports/cpu-amd-epyc

.PHONY: demo reference test test-gpu bench clean gpu-wheels gpu-install validate-gpu

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH),$(PY) -m pip install -q --no-deps -c constraints.txt --index-url $(CPU_WHEELS) torch torchvision)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/wavemix-profile compare --out $(SCRATCH)
	@echo "make demo wrote $(SCRATCH)/ (git-ignored); the committed reference $(REFERENCE)/ changes only by make reference"

# The committed reference: the same comparison measured anew (its store emptied first, so no earlier
# record lingers), then paper-fit's section of report.md and paper_fit.json. `git diff $(REFERENCE)`
# shows what changed; commit it deliberately. scale/ and timeline/ are not remade (docs/paper.md).
reference: $(STAMP)
	rm -f $(REFERENCE)/results.jsonl
	$(VENV)/bin/wavemix-profile compare --out $(REFERENCE)
	$(VENV)/bin/wavemix-profile paper-fit --out $(REFERENCE)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

test-gpu: $(RUN_NEEDS)
	$(RUN) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) benchmarks/dwt.py
	$(PY) benchmarks/max_batch_search.py

gpu-wheels: $(STAMP)
	$(PY) scripts/gpu_wheels.py --dest $(WHEELS)

# A fresh $(SITE) each time, and no build/ left by an earlier call, so no file of an earlier install lingers.
# The project is installed from the tree, not from a wheel made earlier, so what runs is what was sent; its
# build uses the carried setuptools.
gpu-install:
	@test -n "$(wildcard $(WHEELS)/*.whl)" || { echo "no wheels in $(WHEELS)/: run 'make gpu-wheels' where pip reaches the package index, and carry $(WHEELS)" >&2; exit 2; }
	rm -rf $(SITE) build
	$(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --target $(SITE) $(WHEELS)/*.whl
	PYTHONPATH=$(SITE) $(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-build-isolation --upgrade --target $(SITE) .

validate-gpu: $(RUN_NEEDS)
ifdef PACK
	scripts/pack-reports.sh $(PACK) $(LIMIT) $(RUN) -m wavemix_profile validate $(ARGS)
else
	$(RUN) -m wavemix_profile validate $(ARGS)
endif

clean:
	rm -rf $(VENV) build *.egg-info $(WHEELS)
