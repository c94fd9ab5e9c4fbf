# `make run`: set up .venv (pinned), then train -> export -> check -> report. `make test`: the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EDITABLE := $(VENV)/.editable
NODE_STAMP := node_modules/.installed
ARTIFACTS ?= artifacts
# pytest-xdist workers for `make test`: the suite is CPU-bound, two workers fill two cores.
TEST_WORKERS ?= 2

.PHONY: all install run train export check report test prerequisites lint bench bench-peers clean web

all: run

# Re-installs only when requirements.txt changes; creates the venv on a fresh clone.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

# The toolkit itself, editable, so that the console scripts (oneneuron-*) and `python -m export.all`
# work from any directory with the venv activated; again when pyproject.toml changes.
$(EDITABLE): pyproject.toml $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $@

# npm packages for serve/node and serve/web, re-installed only when the lock changes.
# --ignore-scripts: onnxruntime-node's postinstall downloads GPU binaries; the CPU ones ship inside.
$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

install: $(EDITABLE)

# Chromium, Node.js/npm, wrk, h2load: one line per missing program with its install command, exit 1
# (pytest alone skips the tests that need them; `make test`, and so CI, must not go green that way).
prerequisites:
	@$(PYTHON) tests/prerequisites.py

# train -> export -> report -> check in one process (python -m pipeline; README "Performance" says why).
run: $(EDITABLE)
	$(PY) -m pipeline --artifacts $(ARTIFACTS)

train: $(STAMP)
	$(PY) -m train.all --artifacts $(ARTIFACTS)

export: $(STAMP)
	$(PY) -m export.all --artifacts $(ARTIFACTS)

check: $(STAMP)
	$(PY) -m serve.check --artifacts $(ARTIFACTS)

report: $(STAMP)
	$(PY) -m train.report --artifacts $(ARTIFACTS)

# ruff lint + format check (configured in pyproject.toml); `make test` (so CI) fails on any finding.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Two pytest-xdist workers; --dist loadfile runs each test module on one worker, so its
# module-scoped fixtures (a trained MLP, a server process, a browser) are built once, not per worker.
# (Not loadgroup: with pytest 9.2 it silently ignores xdist_group marks, pytest-xdist issue 1386.)
test: prerequisites $(EDITABLE) $(NODE_STAMP) lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

web: $(STAMP) $(NODE_STAMP)
	$(PY) -m serve.web --artifacts $(ARTIFACTS)

clean:
	rm -rf $(ARTIFACTS) .pytest_cache

bench: $(STAMP)
	$(PY) -m bench

# Not part of `make test`: installs KServe 0.21.0 and MLServer 1.7.1 pinned, each in its own venv
# under ~/.cache/oneneuron-peers (PyPI once), then measures them against python -m serve.
bench-peers: $(STAMP)
	$(PY) -m bench.peers
