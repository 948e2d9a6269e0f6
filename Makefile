# Every target sets up .venv itself when missing or out of date (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format setup clean bench bench-tflite notebook

demo: $(STAMP)  ## port the bundled PyTorch model and print the parity report
	$(PY) examples/port_checkpoint.py

test: $(STAMP)  ## lint, then the whole suite (doctests included) on 2 workers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n 2 -q

notebook: $(STAMP)  ## re-run the walkthrough notebook, writing its outputs in place
	$(PY) -c "import nbformat; from nbclient import NotebookClient; \
	p = 'notebooks/port_pytorch_lstm.ipynb'; nb = nbformat.read(p, 4); \
	NotebookClient(nb, timeout=300, kernel_name='python3').execute(); nbformat.write(nb, p)"

bench: $(STAMP)  ## speed and memory vs torch and Keras (~10 min): benchmarks/results.*
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/tflite_scaling.py benchmarks/tflite_scaling.json

bench-tflite: $(STAMP)  ## time of the exported .tflite at L=100 and L=1000
	$(PY) benchmarks/tflite_scaling.py benchmarks/tflite_scaling.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

setup: $(STAMP)

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
