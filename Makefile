# One virtual environment per checkout, built from pyproject.toml and pinned by constraints.txt.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## the whole product end to end on a seeded synthetic fleet
	$(BIN)/creditx demo

test: $(STAMP)  ## lint, types and the test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)  ## every benchmark area; figures land in .creditx/bench/
	$(BIN)/creditx bench all --json-dir .creditx/bench

clean:
	rm -rf $(VENV) .creditx .pytest_cache .mypy_cache .ruff_cache
