import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(__file__))  # for `import oracle`
# The suite runs on 2 xdist workers on 2 cores: one compute thread each, so
# that OpenMP's spin-waiting threads never fight over the cores (processes
# the tests start, e.g. the notebook's kernel, inherit this).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras
import pytest
import tensorflow as tf
import torch

torch.set_num_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)


@pytest.fixture(autouse=True)
def _keras_defaults():
    """Every test starts with float32 and a fixed global seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
