# Two commands for a newcomer: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean-venv

install: $(STAMP)

# torch is pinned and installed first so that nothing pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[train,dev]"
	touch $(STAMP)

demo: install
	bash scripts/demo.sh

test: install
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

test-fast: install
	$(PY) -m pytest -q -n 2 -m "not slow" tests

bench: install
	bash bench/run_all.sh

clean-venv:
	rm -rf $(VENV)
