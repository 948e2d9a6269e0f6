"""The walkthrough notebook runs from start to end (every cell's own asserts
included), so that it can never rot."""

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "port_pytorch_lstm.ipynb"
# What must not be in a cell's output: log lines (TensorFlow's, absl's) and
# absolute paths of the machine that ran it (e.g. in a library's warning).
NOISE = re.compile(r"INFO:|WARNING:absl|WARNING:tensorflow|/(?:work|root|home|tmp)/")


def _text(notebook) -> str:
    return "".join(
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def test_stored_outputs_are_clean():
    """The committed notebook (`make notebook` writes it) holds its results,
    without log lines or this machine's paths."""
    text = _text(nbformat.read(NOTEBOOK, as_version=4))
    assert "rule: max abs error against torch in float64" in text
    assert not NOISE.search(text), NOISE.search(text)


def test_notebook_runs(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": tmp_path}},
    )
    client.execute()
    outputs = _text(notebook)
    assert not NOISE.search(outputs), NOISE.search(outputs)
    assert "rule: max abs error against torch in float64" in outputs
    assert "max abs error vs the Keras layer" in outputs
    errors = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]
    assert not errors
