# Two commands for a newcomer: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  := 2.13.0

.PHONY: install demo test test-fast bench clean-venv

install: $(STAMP)

# torch is pinned and installed first so that nothing pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@echo "Installing corpuskit, torch $(TORCH) (CPU) and the dev tools into $(VENV) (quietly; the first run takes several minutes) ..."
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH)"
	$(PY) -m pip install -q -e ".[train,dev]"
	touch $(STAMP)
	@echo "Installed into $(VENV)."

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
