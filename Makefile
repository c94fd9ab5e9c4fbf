# `make run`: set up .venv (pinned), then train -> export -> check -> report. `make test`: the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
ARTIFACTS ?= artifacts

.PHONY: all install run train export check report test lint bench bench-peers clean web

all: run

# Re-installs only when requirements.txt changes; creates the venv on a fresh clone.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

# npm packages for serve/node and serve/web, re-installed only when the lock changes.
# --ignore-scripts: onnxruntime-node's postinstall downloads GPU binaries; the CPU ones ship inside.
# Without npm nothing is installed and the Node/browser tests skip with the reason.
$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --ignore-scripts --no-audit --no-fund && touch $@; \
	else echo "npm not found: Node.js and browser embedding tests will skip (apt-get install -y nodejs npm)"; fi

install: $(STAMP)

# train -> export -> report -> check in one process (python -m pipeline; README "Performance" says why).
run: $(STAMP)
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

test: $(STAMP) $(NODE_STAMP) lint
	$(PY) -m pytest

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
