"""The bundled demo (`make demo`): it ports its checkpoint within tolerance,
and prints nothing on stderr (no TensorFlow, absl or torch lines)."""

import os
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "examples" / "port_checkpoint.py"


def test_demo_ports_the_bundled_checkpoint_quietly(tmp_path):
    # As `make demo` runs it: its own process, no TF_CPP_MIN_LOG_LEVEL.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, str(DEMO)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "speech_tagger.pt: 24 tensors",
        "  found encoder.lstm: nn.LSTM(input_size=64, hidden_size=96, bias=True, "
        "num_layers=2, bidirectional=True, proj_size=48)",
    ]
    assert [line.split()[0] for line in lines[4:10]] == [
        "tensor",
        "output",
        "h_n",
        "c_n",
        "rule:",
        "logits",
    ]
    assert lines[-1].startswith("OK: the LSTM's tensors at most")
