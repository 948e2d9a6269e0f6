import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(__file__))  # for `import oracle`
# The suite runs on 2 xdist workers on 2 cores: one compute thread each, so
# that OpenMP's spin-waiting threads never fight over the cores (processes
# the tests start, e.g. the notebook's kernel, inherit this).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import tflstm  # noqa: F401, I001  (first: TensorFlow then starts without its log lines)
from collections.abc import Callable
from pathlib import Path

import keras
import pytest
import tensorflow as tf
import torch
from filelock import FileLock

torch.set_num_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)


@pytest.fixture(autouse=True)
def _keras_defaults():
    """Every test starts with float32 and a fixed global seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def build_once(tmp_path_factory, worker_id) -> Callable:
    """`build_once(name, build)` -> a folder that `build(folder)` filled, once
    per test run whatever the number of xdist workers: the first worker to ask
    builds it, the others wait for it and reuse it. (For expensive artefacts:
    exported models and what a separate process served from them.)"""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # the workers' folders share a parent
        root = root.parent

    def build_once_(name: str, build: Callable[[Path], None]) -> Path:
        folder = root / f"shared-{name}"
        with FileLock(f"{folder}.lock"):
            if not (folder / ".built").exists():
                folder.mkdir(exist_ok=True)
                build(folder)
                (folder / ".built").touch()
        return folder

    return build_once_
