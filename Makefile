# `make run`: set up .venv (pinned), then train -> export -> check. `make test`: the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARTIFACTS ?= artifacts

.PHONY: all install run train export check test bench clean

all: run

# Re-installs only when requirements.txt changes; creates the venv on a fresh clone.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

install: $(STAMP)

# train -> export -> check in one process (python -m pipeline; README "Performance" says why).
run: $(STAMP)
	$(PY) -m pipeline --artifacts $(ARTIFACTS)

train: $(STAMP)
	$(PY) -m train.all --artifacts $(ARTIFACTS)

export: $(STAMP)
	$(PY) -m export.all --artifacts $(ARTIFACTS)

check: $(STAMP)
	$(PY) -m serve.check --artifacts $(ARTIFACTS)

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(ARTIFACTS) .pytest_cache

bench: $(STAMP)
	$(PY) -m bench
