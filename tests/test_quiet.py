"""No TensorFlow start-up noise from `import tflstm`, real errors kept; missing
optional dependencies named with the pip command that installs them."""

import os
import re
import subprocess
import sys

import pytest

from _tflstm.extras import MissingExtraError, require
from tflstm._quiet import STARTUP_NOISE, TFLITE_NOISE, drop_noise, filtered_stderr

# As TensorFlow 2.21 prints them on Linux x86-64, oneDNN on, then off.
STARTUP_LINES = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795854919.642372    6046 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1795854924.376497    6103 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
"""
CONVERTER_LINES = """\
W0000 00:00:1795855007.608739    6986 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.
W0000 00:00:1795855007.608795    6986 tf_tfl_flatbuffer_helpers.cc:367] Ignored drop_control_dependency.
I0000 00:00:1795855007.609186    6986 reader.cc:83] Reading SavedModel from: /tmp/tmp_tw0oi89
I0000 00:00:1795855007.820712    6986 flatbuffer_export.cc:4302] Estimated count of arithmetic ops: 0  ops, equivalently 0  MACs
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
"""
# Lines that must get through: errors, other warnings, look-alikes.
KEPT_LINES = """\
E0000 00:00:1795854956.924666    6435 util.cc:131] oneDNN supports DT_BOOL only on platforms with AVX-512. Falling back to the default Eigen-based implementation if present.
W0000 00:00:1795855007.608739    6986 some_op.cc:12] Something the user should see.
F0000 00:00:1795855007.608739    6986 check.cc:1] Check failed: x == y
UserWarning: I0000 is not a log line when it does not start the line
To enable the following instructions, read the manual.
"""


def test_drop_noise_drops_known_lines_and_keeps_the_rest():
    assert drop_noise(STARTUP_LINES + KEPT_LINES, STARTUP_NOISE) == KEPT_LINES
    assert drop_noise(KEPT_LINES + STARTUP_LINES, STARTUP_NOISE) == KEPT_LINES
    assert drop_noise(CONVERTER_LINES, STARTUP_NOISE) == CONVERTER_LINES
    mixed = STARTUP_LINES + CONVERTER_LINES + KEPT_LINES
    assert drop_noise(mixed, TFLITE_NOISE) == KEPT_LINES


def test_filtered_stderr_writes_back_what_is_not_noise(capfd):
    with filtered_stderr(STARTUP_NOISE):
        os.write(2, (STARTUP_LINES + "E0000 a real error\n").encode())
        os.write(1, b"stdout is untouched\n")
    out, err = capfd.readouterr()
    assert (out, err) == ("stdout is untouched\n", "E0000 a real error\n")


def _python(code, **env):
    """Runs `python -c code` as a user would: no TF_CPP_MIN_LOG_LEVEL."""
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**environ, **env},
    )


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_import_tflstm_is_silent(onednn):
    result = _python("import tflstm", TF_ENABLE_ONEDNN_OPTS=onednn)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_import_without_tensorflow_names_the_extras():
    blocked = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'tensorflow':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tflstm\n"
    )
    result = _python(blocked)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "ImportError: tflstm needs TensorFlow, which is not installed. Install it "
        'with pip install "tflstm[tensorflow]" (TensorFlow\'s standard build) or '
        'pip install "tflstm[tensorflow-cpu]" (Linux x86-64, CPU only, a smaller '
        "download); tflstm does not install either by itself, so that it never "
        "adds one beside the other."
    )


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # not installed
    with pytest.raises(
        MissingExtraError,
        match=re.escape(
            'run_tflite needs ai-edge-litert, which is not installed. Install it with: pip install "tflstm[litert]"'
        ),
    ) as info:
        require("ai_edge_litert.interpreter", extra="litert", purpose="run_tflite")
    assert isinstance(info.value, ImportError)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(
        MissingExtraError,
        match=re.escape(
            'compare needs torch, which is not installed. Install it with: pip install "tflstm[torch]" (or, for a CPU-only torch on Linux: pip install torch --index-url https://download.pytorch.org/whl/cpu)'
        ),
    ):
        require("torch", extra="torch", purpose="compare")


def test_require_keeps_errors_from_inside_an_installed_module(tmp_path, monkeypatch):
    (tmp_path / "installed_but_broken.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("installed_but_broken", extra="x")
    assert not isinstance(info.value, MissingExtraError)
    assert info.value.name == "no_such_dependency"
