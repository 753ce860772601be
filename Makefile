# rlcg developer entry points. `make test` is set-up command 2 of the README and what CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
ACT := . $(VENV)/bin/activate &&

.PHONY: install test lint format bench default-policy render-docs clean

$(VENV)/bin/activate:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch is pinned: 2.13.0 is a CPU wheel on this machine's disk; an unpinned torch pulls a multi-GB CUDA build.
install: $(VENV)/bin/activate
	$(PIP) install --quiet torch==2.13.0 -e 'src/rlcg[test]'

lint: install
	$(ACT) ruff check . && ruff format --check .

test: lint
	$(ACT) pytest -q

format: install
	$(ACT) ruff check --fix . && ruff format .

# Speed figures of docs/benchmarks.md (each prints one JSON object).
bench: install
	$(ACT) rlcg bench sim --json && rlcg bench policy --json && rlcg bench train-q --json && \
	rlcg bench ingest --json && rlcg bench train --json

# The shipped default policy (src/rlcg/rlcg/assets/default_policy), see docs/results.md.
default-policy: install
	$(ACT) scripts/make_default_policy.sh

# Render grids of every built-in domain into docs/images.
render-docs: install
	$(ACT) for d in sim randomized pseudo-real; do \
	  for s in 64 128 472; do rlcg render --domain $$d --image-size $$s --seeds 8 --out docs/images/$$d-$$s.png; done; \
	done

clean:
	rm -rf build install log .pytest_cache .ruff_cache
