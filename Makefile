# One-command entry points. Each target creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo lint bench mutate docs clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# torch first, pinned to the local CPU build: a looser spec pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,ray]'  # ray: the Ray backend's tests run too
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/python -m pytest -q

DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

# The documentation site (MkDocs + Material + mkdocstrings) into site/; warnings are errors.
docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

demo: $(STAMP)
	$(BIN)/xinc demo --out runs/demo

bench: $(STAMP)
	$(BIN)/python benchmarks/train_bench.py
	$(BIN)/python benchmarks/canvas_bench.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

# Curated mutations (tools/mutations.toml) on a temporary copy of the tree; not part of `make test`.
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py

clean:
	rm -rf $(VENV) runs site .pytest_cache
