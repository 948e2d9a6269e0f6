import os
import random
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(__file__))  # for `import oracle`
# The suite runs on 2 xdist workers on 2 cores: one compute thread each, so
# that OpenMP's spin-waiting threads never fight over the cores (processes
# the tests start, e.g. the notebook's kernel, inherit this).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

SEED = 1234
# Started first, in this order, by the xdist workers (the tests are handed out
# two at a time in collection order: a long test handed out last leaves the
# other worker idle). Each takes 10-60 s; a name missing here costs only time.
LONG_FIRST = (
    "tests/test_export_saved_model.py::test_saved_models_served_elsewhere",
    "tests/test_notebook.py::test_notebook_runs",
    "tests/test_policy.py::test_jit_compiled_model_fit_predict_evaluate",
    "tests/test_training.py::test_mirrored_strategy_matches_one_device",
    "tests/test_policy.py::test_exports_are_portable_when_a_gpu_is_visible",
    "tests/test_property.py::test_random_sizes_match_torch",
    "tests/test_long.py::test_float32_error_within_torchs_own",
    "tests/test_gru.py::test_long_sequence_float32_error_within_torchs_own",
    "tests/test_gru_exports.py::test_saved_models_served_elsewhere",
    "tests/test_readme.py::test_readme_block_runs_quietly",
    "tests/test_quiet.py::test_import_tflstm_is_silent",
    "tests/test_errors.py::test_non_tensorflow_backend_is_refused",
    "tests/test_cli.py::test_convert_subprocess_is_quiet",
    "tests/test_cli.py::test_to_torch_subprocess_is_quiet",
    "tests/test_examples.py::test_demo_ports_the_bundled_checkpoint_quietly",
    "tests/test_gpu_reference.py::test_reference_script_format_with_torch_cpu",
    "tests/test_export_saved_model.py::test_saved_model_cli_lists_the_signatures",
)


def _is_xdist_controller(config: pytest.Config) -> bool:
    """The process that hands tests to xdist workers and runs none itself."""
    return (
        config.getoption("dist", "no") != "no"
        and bool(config.getoption("tx", None))
        and not config.getoption("collectonly")
    )


def pytest_configure(config: pytest.Config) -> None:
    # TensorFlow and torch start (5-10 s) where tests run: in each xdist
    # worker, or in a run without workers; not in the xdist controller,
    # which would delay the workers' start by that much.
    if _is_xdist_controller(config):
        return
    import tflstm  # noqa: F401, I001  (first: TensorFlow then starts without its log lines)
    import tensorflow as tf
    import torch

    torch.set_num_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        for i, prefix in enumerate(LONG_FIRST):
            if item.nodeid.startswith(prefix):
                return i
        return len(LONG_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


def _tensorflow_seed_is_fresh(seed: int) -> bool:
    """Whether TensorFlow's global random state is what `tf.random.set_seed(seed)`
    leaves: that seed, and no operation seed drawn from it since."""
    from tensorflow.python.eager import context

    rng = getattr(context.context(), "_rng", None)
    return (
        context.global_seed() == seed
        and rng is not None
        and rng.getstate() == random.Random(seed).getstate()
    )


@pytest.fixture(autouse=True)
def _keras_defaults():
    """Every test starts with float32 and a fixed global seed:
    `keras.utils.set_random_seed(SEED)` (Keras's, Python's, NumPy's and
    TensorFlow's seeds). TensorFlow's part, `tf.random.set_seed`, also clears
    TensorFlow's eager caches, the functions already compiled included (about
    0.5 s per configuration a test then compiles again); it is skipped where
    TensorFlow's random state is already the one it sets. (What else it
    resets, the state of stateful random kernels run with an explicit seed,
    is used by no test: Keras draws its random numbers with stateless ops.)"""
    import keras
    import tensorflow as tf

    keras.config.set_dtype_policy("float32")
    if _tensorflow_seed_is_fresh(SEED):
        set_seed, tf.random.set_seed = tf.random.set_seed, lambda seed: None
        try:
            keras.utils.set_random_seed(SEED)
        finally:
            tf.random.set_seed = set_seed
    else:
        keras.utils.set_random_seed(SEED)
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
