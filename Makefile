# Two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv itself,
# and does nothing more when pyproject.toml and constraints.txt have not changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-gpu bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/wavemix-profile compare

test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) benchmarks/dwt.py
	$(PY) benchmarks/max_batch_search.py

clean:
	rm -rf $(VENV) build *.egg-info
