"""Importing TensorFlow, and running its converters, without their log noise.

TensorFlow's C++ libraries write a few lines while they load, before absl's
logging is initialised, so `TF_CPP_MIN_LOG_LEVEL` cannot hold them back (TF
2.21, Linux x86-64):

    WARNING: All log messages before absl::InitializeLog() is called are ...
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:... cpu_feature_guard.cc:227] This TensorFlow binary is ...
    To enable the following instructions: AVX2 ..., rebuild TensorFlow ...

(the first two twice, once per shared library). Only redirecting the process's
file descriptor 2 while they are written silences them. `filtered_stderr`
does this, then writes back every captured line that is not known noise, so
that a real error is never hidden. `import_tensorflow` uses it once, before
Keras imports TensorFlow; `tflstm` calls it on import.

The TFLite converter logs a dozen INFO lines per conversion from C++ (reading
the SavedModel, MLIR passes, op counts), and LiteRT's interpreter one line when
it creates its CPU delegate; `filtered_stderr(TFLITE_NOISE)` around
`converter.convert()` or the interpreter drops those too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

__all__ = [
    "STARTUP_NOISE",
    "TFLITE_NOISE",
    "drop_noise",
    "filtered_stderr",
    "import_tensorflow",
    "without_info_logs",
]

# The prefix of an absl/glog line: severity, date, time, thread, file:line.
_GLOG = r"[IWEF]\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w.-]+:\d+\] "

# Written while TensorFlow's libraries load; each pattern matches one line.
STARTUP_NOISE: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"WARNING: All log messages before absl::InitializeLog\(\) is called "
        r"are written to STDERR$",
        _GLOG + r"oneDNN custom operations are on\. ",
        _GLOG + r"This TensorFlow binary is optimized to use available CPU "
        r"instructions in performance-critical operations\.$",
        r"To enable the following instructions: .*, in other operations, "
        r"rebuild TensorFlow with the appropriate compiler flags\.$",
        # The CUDA build of `tensorflow` on a machine without a GPU: harmless
        # double registrations of its plugins.
        _GLOG + r"Unable to register cu(DNN|FFT|BLAS) factory: ",
        _GLOG + r"computation placer already registered\. ",
    )
)

# The TFLite converter: every INFO line, and two warnings about options that
# the TF 2.x converter API sets itself; LiteRT's interpreter: its CPU delegate.
TFLITE_NOISE: tuple[re.Pattern[str], ...] = (
    *STARTUP_NOISE,
    re.compile(r"I\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w.-]+:\d+\] "),
    re.compile(_GLOG + r"Ignored (output_format|drop_control_dependency)\.$"),
    re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"),
)


def drop_noise(text: str, patterns: Sequence[re.Pattern[str]]) -> str:
    """`text` without the lines that match one of `patterns`.

    >>> drop_noise("WARNING: All log messages before absl::InitializeLog() "
    ...            "is called are written to STDERR\\nE0000 real\\n", STARTUP_NOISE)
    'E0000 real\\n'
    """
    kept = [
        line
        for line in text.splitlines(keepends=True)
        if not any(p.match(line.rstrip("\r\n")) for p in patterns)
    ]
    return "".join(kept)


@contextlib.contextmanager
def filtered_stderr(
    patterns: Sequence[re.Pattern[str]] = STARTUP_NOISE,
) -> Iterator[None]:
    """Captures file descriptor 2 (C++ logging included) for the duration, then
    writes what it captured, less the lines matching `patterns`, to
    `sys.stderr`."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no usable stderr: nothing to do
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()  # Python's writes to fd 2 belong to the capture
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = drop_noise(capture.read().decode(errors="replace"), patterns)
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


@contextlib.contextmanager
def without_info_logs() -> Iterator[None]:
    """TensorFlow's Python logger at WARNING or above for the duration: its
    INFO lines ("Assets written to: ...", once per SavedModel written, also by
    the TFLite converter) are not for our users."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def import_tensorflow() -> ModuleType:
    """`import tensorflow`, without its start-up lines on stderr.

    Raises:
        ImportError: if TensorFlow is not installed; the message names the
            extras of `tflstm` that install it.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with filtered_stderr(STARTUP_NOISE):
        try:
            import tensorflow
        except ModuleNotFoundError as e:
            if e.name != "tensorflow":
                raise
            raise ImportError(
                "tflstm needs TensorFlow, which is not installed. Install it "
                'with pip install "tflstm[tensorflow]" (TensorFlow\'s standard '
                'build) or pip install "tflstm[tensorflow-cpu]" (Linux x86-64, '
                "CPU only, a smaller download); tflstm does not install either "
                "by itself, so that it never adds one beside the other.",
                name="tensorflow",
            ) from e
    return tensorflow
