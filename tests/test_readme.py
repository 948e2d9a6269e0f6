"""Every Python block of the README and of the documentation's pages
(docs/**/*.md) runs as written, quietly (no TensorFlow, absl, converter or
LiteRT log line reaches stderr, file descriptor 2, where C++ logging goes), and
in the environment that `make demo` sets up (`requirements-demo.txt`): what a
block imports, and the optional dependencies that tflstm imports on demand for
it, are installed there."""

import ast
import importlib.metadata
import pathlib
import re
import sys
import traceback

import pytest

from _tflstm.extras import _DISTRIBUTIONS as OPTIONAL
from _tflstm.extras import MissingExtraError

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
# (page, index within the page, source)
BLOCKS = [
    (page.relative_to(ROOT).as_posix(), i, block)
    for page in PAGES
    for i, block in enumerate(
        re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    )
]
IDS = [f"{page}-{i}" for page, i, _ in BLOCKS]
# glog/absl lines ("I0000 00:00:... file.cc:12] ..."), absl's Python logger,
# TensorFlow's Python logger, LiteRT's delegate line.
NOISE = re.compile(
    r"^([IWEF]\d{4} \d|WARNING:absl:|WARNING:tensorflow:|INFO:|WARNING: All log)",
    re.MULTILINE,
)


def _canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: pathlib.Path) -> set[str]:
    """The distributions a requirements file lists, its `-r` files included."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= _requirements(path.parent / line[2:].strip())
        elif line:
            names.add(_canonical(re.match(r"[A-Za-z0-9._-]+", line)[0]))
    return names


DEMO = _requirements(ROOT / "requirements-demo.txt")


def _undeclared_imports(source: str, provided: set[str]) -> dict[str, list[str]]:
    """The top-level modules `source` imports that are neither the standard
    library's nor provided by a distribution in `provided` (or tflstm), each
    with the distributions that provide it here."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    providers = importlib.metadata.packages_distributions()
    own = {m for m in modules if (ROOT / m / "__init__.py").is_file()}  # tflstm's
    undeclared = {}
    for module in sorted(modules - own - set(sys.stdlib_module_names)):
        distributions = sorted({_canonical(d) for d in providers.get(module, [])})
        if not set(distributions) & (provided | {"tflstm"}):
            undeclared[module] = distributions
    return undeclared


def _run_as_in_demo(source: str, name: str, provided: set[str], monkeypatch) -> None:
    """Runs `source` with tflstm's optional dependencies that `provided` lacks
    hidden, as they are missing from the demo's environment."""
    for module, distribution in OPTIONAL.items():
        if _canonical(distribution) not in provided:
            monkeypatch.setitem(sys.modules, module, None)
    try:
        exec(compile(source, name, "exec"), {})
    except MissingExtraError as e:
        pytest.fail(f"{name} needs {e.name}, not in requirements-demo.txt: {e}")


def test_readme_and_docs_have_python_blocks():
    pages = {page for page, _, _ in BLOCKS}
    assert "README.md" in pages and "docs/guides/port.md" in pages
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("block", BLOCKS, ids=IDS)
def test_block_imports_what_make_demo_installs(block):
    page, index, source = block
    undeclared = _undeclared_imports(source, DEMO)
    assert not undeclared, (
        f"{page} block {index} imports modules that no distribution in "
        f"requirements-demo.txt provides (module: distributions here): {undeclared}"
    )


@pytest.mark.parametrize("block", BLOCKS, ids=IDS)
def test_block_runs_quietly(block, tmp_path, monkeypatch, capfd):
    page, index, source = block
    monkeypatch.chdir(tmp_path)
    _run_as_in_demo(source, f"{page} block {index}", DEMO, monkeypatch)
    err = capfd.readouterr().err
    assert not NOISE.search(err), err


def test_the_demo_checks_fail_on_what_the_demo_lacks(monkeypatch):
    assert _undeclared_imports("import os\nimport tflstm, converters", DEMO) == {}
    assert _undeclared_imports("import numpy as np", DEMO - {"numpy"}) == {
        "numpy": ["numpy"]
    }
    assert set(_undeclared_imports("import pytest, no_such_module", DEMO)) == {
        "pytest",
        "no_such_module",
    }
    block = "from tflstm.tflite import run_tflite\nrun_tflite(b'', {}, None)"
    with pytest.raises(pytest.fail.Exception) as info:
        _run_as_in_demo(block, "block", DEMO - {"ai-edge-litert"}, monkeypatch)
    assert str(info.value).startswith(
        "block needs ai_edge_litert, not in requirements-demo.txt: run_tflite needs"
    )


def test_a_missing_extra_is_one_error_as_the_readme_quotes_it(monkeypatch):
    """One error, no `ModuleNotFoundError` chained under it (`tflstm-convert`
    prints its message as one line)."""
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # not installed
    from tflstm.tflite import run_tflite

    with pytest.raises(MissingExtraError) as info:
        run_tflite(b"", {}, None)
    quoted = re.search(r"`(run_tflite needs .*?)`", README.read_text(), re.DOTALL)
    assert str(info.value) == " ".join(quoted[1].split())
    assert info.value.name == "ai_edge_litert"
    printed = "".join(traceback.format_exception(info.value))
    assert printed.count("Traceback (most recent call last)") == 1, printed
    assert "During handling" not in printed and "direct cause" not in printed
