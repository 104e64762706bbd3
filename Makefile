# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
# torch/torchvision are pinned for CPU machines like ours (see DEVELOPERS.md): an unpinned
# torch can pull a multi-GB build. Override on other machines: make TORCH_PINS="torch torchvision".
PYTHON ?= python3
VENV ?= .venv
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e ".[dev]" $(TORCH_PINS)
	touch $(STAMP)

demo: setup
	$(BIN)/vlmtune demo

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
