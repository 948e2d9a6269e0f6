"""`tflstm-convert`: list, convert and verify the LSTMs of PyTorch checkpoints.

Exit codes: 0 success; 1 a `--verify` error above tolerance; 2 bad usage or
input (a missing file, an unreadable checkpoint, a prefix that matches nothing,
a missing optional dependency).

`list` reads only keys and shapes and imports neither TensorFlow nor Keras;
`convert` and `to-torch` import TensorFlow without its start-up log lines.

One module per command (`listing`, `convert`, `to_torch`), what they share
(`_common`), the output names (`outputs`), `--verify` (`judge`) and the parser
(`parser`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from _tflstm import __version__
from converters.cli._common import EXIT_OK, EXIT_USAGE, EXIT_VERIFY_FAILED, CliError
from converters.cli.convert import run_convert
from converters.cli.listing import run_list
from converters.cli.parser import build_parser
from converters.cli.to_torch import run_to_torch

__all__ = [
    "COMMANDS",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VERIFY_FAILED",
    "CliError",
    "__version__",
    "main",
]

COMMANDS = {"list": run_list, "convert": run_convert, "to-torch": run_to_torch}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `tflstm-convert` with `argv` (default: `sys.argv[1:]`); the exit code."""
    # A command-line program may choose TensorFlow's log level; run-time INFO
    # and WARNING lines of TensorFlow's C++ code say nothing to its users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CliError, FileNotFoundError, ValueError, TypeError, ImportError) as e:
        print(f"tflstm-convert {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
