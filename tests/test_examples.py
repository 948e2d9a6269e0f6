"""The bundled demo (`make demo`) ports its checkpoint within tolerance."""

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_demo_ports_the_bundled_checkpoint(capsys):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import port_checkpoint
    finally:
        sys.path.remove(str(EXAMPLES))
    assert port_checkpoint.main() == 0
    out = capsys.readouterr().out
    assert "found encoder.lstm.: nn.LSTM(input_size=64, hidden_size=96" in out
    assert "OK: max abs error" in out
