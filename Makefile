# tenderhub developer entry points. The two commands for a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test check fmt unit integration stack-up stack-down stack-status clean

venv:            ## create .venv from requirements.lock (wheels cached machine-wide)
	@scripts/venv.sh

demo: venv       ## main job: bring the stack up, migrate, smoke-run every service
	@$(BIN)/tenderhub demo

test: venv       ## the whole test command CI runs: stack up, migrate, lint, types, all tests
	@scripts/test.sh

check: venv      ## lint and types only
	@$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

fmt: venv
	@$(BIN)/ruff format . && $(BIN)/ruff check --fix .

unit: venv       ## unit tests (no services needed)
	@$(BIN)/pytest tests/unit

integration: venv
	@$(BIN)/pytest tests/integration

stack-up: venv
	@$(BIN)/tenderhub stack up

stack-down: venv
	@$(BIN)/tenderhub stack down

stack-status: venv
	@$(BIN)/tenderhub stack status

clean: stack-down
	rm -rf .stack $(VENV) .mypy_cache .ruff_cache .pytest_cache
