"""Every Python block of the README runs as written, and quietly: no
TensorFlow, absl, converter or LiteRT log line reaches stderr (file
descriptor 2, where C++ logging goes)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
# glog/absl lines ("I0000 00:00:... file.cc:12] ..."), absl's Python logger,
# TensorFlow's Python logger, LiteRT's delegate line.
NOISE = re.compile(
    r"^([IWEF]\d{4} \d|WARNING:absl:|WARNING:tensorflow:|INFO:|WARNING: All log)",
    re.MULTILINE,
)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_quietly(index, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})
    err = capfd.readouterr().err
    assert not NOISE.search(err), err
