# Two commands for a new user: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The real Better Auth server (Node) that tests/test_better_auth.py runs against.
BETTER_AUTH := tests/better_auth
BETTER_AUTH_STAMP := $(BETTER_AUTH)/node_modules/.installed
# The board's host harness (ext-apps AppBridge, MCP TypeScript SDK, playwright-core) that
# tests/test_board.py drives in Debian's headless Chromium.
BOARD_E2E := tests/board
BOARD_E2E_STAMP := $(BOARD_E2E)/node_modules/.installed

.PHONY: demo test lint bench clean board board-e2e board-screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BETTER_AUTH_STAMP): $(BETTER_AUTH)/package-lock.json
	npm ci --prefix $(BETTER_AUTH) --no-audit --no-fund
	touch $@

$(BOARD_E2E_STAMP): $(BOARD_E2E)/package-lock.json
	npm ci --prefix $(BOARD_E2E) --no-audit --no-fund
	touch $@

demo: $(STAMP)
	$(BIN)/task-mcp demo

test: $(STAMP) $(BETTER_AUTH_STAMP) $(BOARD_E2E_STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check task_mcp tests benchmarks
	$(BIN)/ruff format --check task_mcp tests benchmarks
	$(BIN)/mypy

# Ratios against baselines measured in the same run; prints a table, writes benchmarks/results/latest.json.
bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache $(BETTER_AUTH)/node_modules $(BOARD_E2E)/node_modules

# The task board (MCP App, DESIGN §13): rebuilds the committed task_mcp/ui/board.html from ui/board.
board:
	npm ci --prefix ui/board --no-audit --no-fund
	npm run --prefix ui/board build

# The board in headless Chromium (Debian's chromium) under the ext-apps host bridge, against a real
# `task-mcp serve --transport http` with a fresh database; screenshots go to tests/board/out/.
board-e2e: $(STAMP) $(BOARD_E2E_STAMP)
	$(BIN)/python tests/board/serve.py -- node tests/board/run.mjs --out tests/board/out

# The README's screenshots (docs/board-*.png): the seeded board before any click, light and dark.
board-screenshots: $(STAMP) $(BOARD_E2E_STAMP)
	TASK_MCP_E2E_ACTIONS=0 $(BIN)/python tests/board/serve.py -- node tests/board/run.mjs --out docs
	TASK_MCP_E2E_ACTIONS=0 TASK_MCP_E2E_THEME=dark TASK_MCP_E2E_NAME=board-dark \
		$(BIN)/python tests/board/serve.py -- node tests/board/run.mjs --out docs
