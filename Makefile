# The README's quick start: `make demo`, then `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hearth-installed
DEV_STAMP := $(VENV)/.hearth-dev
DEMO_HOME := $(CURDIR)/.hearth-demo
DEMO := HEARTH_HOME=$(DEMO_HOME) HF_HUB_OFFLINE=1 $(BIN)/hearth --config deploy/demo/hearth.yaml

.PHONY: install dev demo test bench lint clean vscode lock

$(STAMP): pyproject.toml deploy/requirements.lock deploy/install.sh deploy/build-llama.sh
	VENV=$(VENV) bash deploy/install.sh
	touch $@

$(DEV_STAMP): $(STAMP) deploy/requirements-dev.lock
	VENV=$(VENV) bash deploy/install.sh --dev
	touch $@

install: $(STAMP)

dev: $(DEV_STAMP)

demo: $(STAMP)
	$(DEMO) index
	$(DEMO) ask "How many vacation days do new employees get, and how do I request time off?"

test: $(DEV_STAMP)
	bash tests/run.sh

# Refresh the locks install.sh installs from (newest releases pyproject.toml allows, with hashes),
# reinstall from them and run the whole suite against them. Commit the two .lock files if it passes.
lock:
	bash deploy/lock.sh
	rm -f $(STAMP) $(DEV_STAMP)
	$(MAKE) test

# Each benchmark prints one JSON object with its figures and a ratio against a baseline measured
# in the same run. Sizes are small by default (2 shared cores); every script takes --help.
bench: $(DEV_STAMP)
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/llm_concurrency.py
	$(BIN)/python bench/lsp.py
	$(BIN)/python bench/rest.py
	$(BIN)/python bench/slack_ack.py
	$(BIN)/python bench/retrieval.py

# The VS Code extension as an installable .vsix in build/vscode (Node.js 20+ and npm; @vscode/vsce
# and the extension's dependencies come from the npm registry). Install it with
# `code --install-extension build/vscode/hearth-vscode-<version>.vsix`.
vscode:
	bash lsp/editors/vscode/build.sh build/vscode

lint: $(DEV_STAMP)
	$(BIN)/ruff check core bot lsp connectors server tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(DEMO_HOME) .pytest_cache
