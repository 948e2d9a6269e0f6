"""The distribution as pip users get it: a warning-free build, its metadata and
files, and what pip resolves next to an installed TensorFlow.

pip runs with `--isolated --no-index` against a folder holding the built wheel
and small stand-in wheels (metadata only) of the dependencies, so that the
resolution is that of tflstm's own metadata, offline and in seconds.
"""

import email
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "MANIFEST.in", "LICENSE", "README.md", "PYPI.md"]
PACKAGES = ["tflstm", "converters", "_tflstm"]
CORE = {"tflstm", "numpy", "keras", "safetensors"}


def _run(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # else setuptools warns it skips it
    result = subprocess.run(
        list(map(str, args)), capture_output=True, text=True, cwd=cwd, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel, sdist, build log), built from a copy of the sources."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy(ROOT / name, src / name)
    for name in PACKAGES:
        shutil.copytree(
            ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    log = _run(sys.executable, "-m", "build", "--no-isolation", "-o", tmp / "dist", src)
    (wheel,) = (tmp / "dist").glob("*.whl")
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    return wheel, sdist, log


def test_build_has_no_warnings(built):
    *_, log = built
    assert "Successfully built tflstm-" in log
    assert [line for line in log.splitlines() if "warn" in line.lower()] == []


def test_wheel_metadata(built):
    wheel, *_ = built
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(z.read(metadata))
        license_text = z.read(metadata.replace("METADATA", "licenses/LICENSE"))
    assert meta["License-Expression"] == "Apache-2.0"
    assert b"Apache License\n                           Version 2.0" in license_text
    assert meta["Author-email"] and meta.get_all("Project-URL")
    # TensorFlow only through extras: depending on one build would add it
    # beside the other.
    unconditional = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert sorted(re.match(r"[\w-]+", r)[0] for r in unconditional) == [
        "keras",
        "numpy",
        "safetensors",
    ]
    assert set(meta.get_all("Provides-Extra")) == {
        "tensorflow",
        "tensorflow-cpu",
        "torch",
        "litert",
    }
    description = meta.get_payload()
    assert description == (ROOT / "PYPI.md").read_text()
    # Written for pip users: no developer commands, no links into the repository.
    assert "make " not in description
    assert re.findall(r"\]\((?!https://)", description) == []
    packages = {n.split("/")[0] for n in names if n.endswith(".py")}
    assert packages == set(PACKAGES)


def test_sdist_holds_the_sources_and_no_tests(built):
    wheel, sdist, _ = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    with zipfile.ZipFile(wheel) as z:
        modules = {n for n in z.namelist() if n.endswith(".py")}
    assert modules <= names
    assert {"LICENSE", "PKG-INFO", "PYPI.md", "pyproject.toml"} <= names
    assert not [n for n in names if n.startswith("tests")]


def _stand_in(folder: Path, name: str, version: str, requires=()) -> None:
    """A wheel with only metadata, named and versioned as the real one."""
    dist = re.sub(r"[-.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


@pytest.fixture(scope="module")
def index(built, tmp_path_factory):
    """A folder of wheels: tflstm's and stand-ins of its dependencies."""
    folder = tmp_path_factory.mktemp("wheels")
    shutil.copy(built[0], folder)
    for name, version, requires in [
        ("numpy", "2.4.6", ()),
        ("keras", "3.15.1", ()),
        ("safetensors", "0.8.0", ()),
        ("tensorflow", "2.21.0", ()),
        ("tensorflow-cpu", "2.21.0", ()),
        ("ai-edge-litert", "2.3.0", ()),
        # As on Linux: the default torch pulls CUDA libraries.
        ("torch", "2.13.0", ("nvidia-cublas-cu12",)),
        ("nvidia-cublas-cu12", "12.9.1.4", ()),
    ]:
        _stand_in(folder, name, version, requires)
    return folder


def _resolve(tmp_path, index, requirement, installed=None):
    """What `pip install requirement` would add to a fresh venv holding `installed`."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--isolated", "--python", python]
    offline = ["--no-index", "--find-links", index, "--disable-pip-version-check"]
    if installed:
        _run(*pip, "install", "-q", *offline, installed)
    report = tmp_path / "report.json"
    _run(*pip, "install", "--dry-run", "--report", report, *offline, requirement)
    return {
        item["metadata"]["name"] for item in json.loads(report.read_text())["install"]
    }


@pytest.mark.parametrize("installed", ["tensorflow-cpu", "tensorflow"])
def test_pip_adds_no_second_tensorflow_and_no_torch(tmp_path, built, index, installed):
    assert _resolve(tmp_path, index, built[0], installed) == CORE


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.uname().machine != "x86_64",
    reason="the tensorflow-cpu extra is for Linux x86-64",
)
@pytest.mark.parametrize(
    "extra, added",
    [("tensorflow", "tensorflow"), ("tensorflow-cpu", "tensorflow-cpu")],
)
def test_tensorflow_extras_add_one_build(tmp_path, built, index, extra, added):
    assert _resolve(tmp_path, index, f"tflstm[{extra}]") == CORE | {added}
