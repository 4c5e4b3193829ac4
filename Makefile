# spotcheck — `make help` lists the targets. Both main targets bootstrap their own environment.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# Use uv from PATH, else the one pip installs as a module (bootstrap installs it if missing).
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN := $(UV) run --frozen --all-extras
DEMO_DIR ?= demo
DEMO_STORES ?= 60000
DEMO_SEED ?= 7
DEMO_TRIALS ?= 20

.PHONY: help bootstrap demo test lint format clean

help: ## Show this help.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

bootstrap: ## Install uv if missing and sync the locked environment.
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --all-extras

demo: bootstrap ## Run the main job end to end on embedded defaults into $(DEMO_DIR)/.
	@DEMO_DIR=$(DEMO_DIR) DEMO_STORES=$(DEMO_STORES) DEMO_SEED=$(DEMO_SEED) DEMO_TRIALS=$(DEMO_TRIALS) RUN="$(RUN)" bash scripts/demo.sh

test: bootstrap ## Lint and run the full test suite.
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_system_deps.sh
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) pytest

lint: bootstrap ## ruff check and format check.
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: bootstrap ## Format the code with ruff.
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

clean: ## Remove the demo outputs.
	rm -rf $(DEMO_DIR)
