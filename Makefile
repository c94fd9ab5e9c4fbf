# `make run`: set up .venv (pinned), then train -> export -> check -> report. `make test`: the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARTIFACTS ?= artifacts

.PHONY: all install run train export check report test bench clean

all: run

# Re-installs only when requirements.txt changes; creates the venv on a fresh clone.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(PY) -m train.all --artifacts $(ARTIFACTS)
	$(PY) -m export.all --artifacts $(ARTIFACTS)
	$(PY) -m serve.check --artifacts $(ARTIFACTS)
	$(PY) -m train.report --artifacts $(ARTIFACTS)

train: $(STAMP)
	$(PY) -m train.all --artifacts $(ARTIFACTS)

export: $(STAMP)
	$(PY) -m export.all --artifacts $(ARTIFACTS)

check: $(STAMP)
	$(PY) -m serve.check --artifacts $(ARTIFACTS)

report: $(STAMP)
	$(PY) -m train.report --artifacts $(ARTIFACTS)

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(ARTIFACTS) .pytest_cache
