# Two commands a user needs: `make demo` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test lint fmt bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/python -m examples.demo

test: install lint
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check src tests examples bench
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format src tests examples bench
	$(BIN)/ruff check --fix src tests examples bench

bench: install
	$(BIN)/python bench/migration.py

clean:
	rm -rf $(VENV) .diachronic .pytest_cache .mypy_cache .ruff_cache
