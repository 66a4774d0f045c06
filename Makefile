# Set-up and the everyday commands. Everything installs into this folder:
# .venv/ (Python), node_modules/ (anvil, solc-js, OpenZeppelin).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test unit bench simulate clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/python -c "import tronpy.version, sys; v = tronpy.version.VERSION; sys.exit(0 if v == '0.6.2' else f'tronpy {v} resolved, need 0.6.2')"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/indexer --config chains.yaml demo

test: setup
	$(BIN)/python -m pytest -q

unit: setup
	$(BIN)/python -m pytest -q tests/unit

bench: setup
	$(BIN)/python bench/backfill.py

# Deterministic simulation (indexer/simulation): SEEDS schedules from START, or one SEED; PLANT=name|list.
SEEDS ?= 1000
START ?= 0
JOBS ?= 4
simulate: setup
	@$(BIN)/python -m indexer.simulation --seeds $(SEEDS) --start $(START) --jobs $(JOBS) \
		$(if $(SEED),--seed $(SEED)) $(if $(PLANT),--plant $(PLANT))

clean:
	rm -rf $(VENV) node_modules .indexer
