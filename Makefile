# Every target sets up .venv itself when missing or out of date (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint format setup clean bench bench-floors bench-tflite notebook docs docs-serve

demo: $(DEMO_STAMP)  ## port the bundled PyTorch model and print the parity report
	$(PY) examples/port_checkpoint.py

test: $(STAMP)  ## lint, layering, the docs site built strictly; the whole suite on 2 workers and, beside it, types and the oneDNN-sensitive tests with oneDNN flipped
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(PY) .ci/suite.py

docs: $(STAMP)  ## the documentation site, strictly (a broken link or reference fails), into site/
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)  ## serve the documentation site at http://127.0.0.1:8000, rebuilt on every change
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

notebook: $(STAMP)  ## re-run the walkthrough notebook, writing its outputs in place
	$(PY) -c "import nbformat; from nbclient import NotebookClient; \
	p = 'notebooks/port_pytorch_lstm.ipynb'; nb = nbformat.read(p, 4); \
	NotebookClient(nb, timeout=300, kernel_name='python3').execute(); nbformat.write(nb, p)"

bench: $(STAMP)  ## speed and memory vs torch and Keras (~45 min): benchmarks/results.*, results_gru.*, results_rnn.*
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/bench.py --cell gru
	$(PY) benchmarks/bench.py --cell rnn
	$(PY) benchmarks/tflite_scaling.py benchmarks/tflite_scaling.json

bench-floors: $(STAMP)  ## the fastest TensorFlow gets at all, vs the speed targets: benchmarks/floors.*
	$(PY) benchmarks/floors.py

# litert-torch, when a Python with it is given (LITERT_TORCH_PYTHON=path/to/python;
# otherwise its recipe, written here, stands in).
bench-tflite: $(STAMP)  ## .tflite latency vs torch and litert-torch; growth with L
	$(PY) benchmarks/tflite_latency.py --out benchmarks/tflite_latency.json \
		$(if $(LITERT_TORCH_PYTHON),--litert-torch-python $(LITERT_TORCH_PYTHON))
	$(PY) benchmarks/tflite_latency.py --cell gru --out benchmarks/tflite_latency_gru.json \
		$(if $(LITERT_TORCH_PYTHON),--litert-torch-python $(LITERT_TORCH_PYTHON))
	$(PY) benchmarks/tflite_latency.py --cell rnn --out benchmarks/tflite_latency_rnn.json \
		$(if $(LITERT_TORCH_PYTHON),--litert-torch-python $(LITERT_TORCH_PYTHON))
	$(PY) benchmarks/tflite_scaling.py benchmarks/tflite_scaling.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

setup: $(STAMP)

# The demo needs only the runtime dependencies and torch; the full set
# (requirements-dev.txt includes the demo's) sets up the demo too.
$(DEMO_STAMP): requirements-demo.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-demo.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(DEMO_STAMP)

$(STAMP): requirements-dev.txt requirements-demo.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP) $(DEMO_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
