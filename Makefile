# Two commands matter: `make demo` (the whole study on the embedded builtin tasks, CPU, minutes)
# and `make test` (the test suite). Each installs what it needs first, idempotently.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo study-cpu test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,ray,gguf,wandb,bf16]"
	touch $@

demo: setup
	$(VENV)/bin/tunebench demo

# The study on the real official data with the real pretrained stories260K checkpoint (../shared), about an hour
# on 2 CPU cores; resumable (re-running skips finished runs). The worked example it produced is docs/study-cpu/.
study-cpu: setup
	$(VENV)/bin/tunebench data import --glue-dir ../shared/data/glue --squad-dir ../shared/data/squad_v2
	$(VENV)/bin/tunebench demo --plan study_cpu

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) results build src/*.egg-info
