"""Prints the TF_ENABLE_ONEDNN_OPTS value that flips TensorFlow's oneDNN
setting here: 0 where oneDNN is on (by default on AVX-512 CPUs, or as the
environment says), 1 where it is off. `make test` runs the oneDNN-sensitive
tests (marker `numerics`) a second time with it, so that CI covers both
settings whatever CPU it lands on."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
stderr = os.dup(2)
with open(os.devnull, "w") as devnull:  # TensorFlow's start-up lines
    os.dup2(devnull.fileno(), 2)
    try:
        from tensorflow.python.util import _pywrap_util_port
    finally:
        os.dup2(stderr, 2)
print(0 if _pywrap_util_port.IsMklEnabled() else 1)
sys.stdout.flush()
