# sslbench — every target that needs Python depends on the virtual environment, which is
# (re)built only when pyproject.toml changes. On a fresh machine `make bench METHOD=vicreg`
# and `make test` are the only set-up commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

METHOD ?= vicreg
PRESET ?= auto
DATA   ?=
SHARD  ?=
# random (the default) or imagenet: continue the SSL methods from ImageNet weights (rows `METHOD ← imagenet`).
START  ?=

.PHONY: install test test-fast bench leaderboard perf golden mutation lint gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Lint first (seconds), then the tests. The committed results and page are named: $SSLBENCH_RESULTS_DIR
# (a user's own results) is not what CI checks.
# One pytest worker per CPU (pytest-xdist), each with one torch thread: most tests are small models and CLI
# subprocesses that gain nothing from intra-op threads, so the workers fill the cores instead.
test: $(STAMP) lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not perf" -n $(or $(JOBS),logical)
	$(BIN)/sslbench leaderboard --check --results leaderboard/results --out leaderboard/LEADERBOARD.md

bench: $(STAMP)
	$(BIN)/sslbench bench --method $(METHOD) --preset $(PRESET) $(if $(DATA),--dataset $(DATA)) $(if $(SHARD),--shard $(SHARD)) $(if $(START),--start $(START))

leaderboard: $(STAMP)
	$(BIN)/sslbench leaderboard

perf: $(STAMP)
	$(BIN)/python -m pytest -q -m perf --benchmark-enable --benchmark-columns=min,mean,max,rounds tests/perf

# The leaderboard's golden file changes only here, never from inside a test; review `git diff` after.
golden: $(STAMP)
	$(BIN)/python -m tests.regenerate_golden

# Mutation testing of the modules where a silent bug corrupts results (TESTING.md): slow, niced,
# incremental (mutants/ keeps the verdicts; only changed functions are tested again).
# mutmut refreshes only the Python files of mutants/; the others (schema, protocol TOMLs, fixtures) are copied here.
mutation: $(STAMP)
	@if [ -d mutants ]; then git ls-files -- benchmark methods protocols leaderboard tests ':!:*.py' \
		| while read -r f; do mkdir -p "mutants/$$(dirname "$$f")" && cp "$$f" "mutants/$$f"; done; fi
	nice -n 10 $(BIN)/mutmut run --max-children $(or $(JOBS),1)
	$(BIN)/python -m tests.mutation_scores

# ruff, then import-linter: the layers and "never" rules of DESIGN.md ([tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Every device path for a few steps (GPU cache, pinned gather, bf16, compile, DDP, protocols); OUT=dir keeps the table.
gpu-check: $(STAMP)
	$(BIN)/sslbench doctor $(if $(OUT),--out $(OUT))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks .import_linter_cache mutants
