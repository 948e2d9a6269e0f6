"""Where the code runs, asked of TensorFlow and Keras: every private
TensorFlow/Keras API that tflstm's layers depend on, in one module.

Each probe has a canary in tests/test_probes.py that fails, naming the API,
when a TensorFlow or Keras upgrade changes it. (The TFLite converter's
internals are in `tflstm.tflite._internals`, with tests/test_tflite_canaries.py.)
The kernel policy (`tflstm.kernels.policy`) reads the environment through these
functions only, so that tests can patch them (e.g. "a GPU is visible" on a
CPU machine).
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import keras
import tensorflow as tf


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (Keras's `_is_gpu_available`)."""
    return bool(tf.config.list_logical_devices("GPU"))


def onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN optimisations are on: by default only on
    some CPUs, or as `TF_ENABLE_ONEDNN_OPTS` says. (Reported by the
    benchmarks; the kernel policy does not depend on it.)

    Private: `tensorflow.python.util._pywrap_util_port.IsMklEnabled`.
    """
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def device_scope() -> str:
    """The device type of the current `tf.device` scope ("" if none).

    Private: the eager context's `device_name`; a graph's
    `_device_function_stack`.
    """
    if tf.executing_eagerly():
        from tensorflow.python.eager import context

        name = context.context().device_name
    else:
        from tensorflow.python.framework import ops

        scoped = bool(ops.get_default_graph()._device_function_stack)
        name = tf.raw_ops.NoOp().device if scoped else ""
    return tf.DeviceSpec.from_string(name or "").device_type or ""


def in_xla() -> bool:
    """Whether the code is being traced inside an XLA computation.

    Private: `control_flow_util.GraphOrParentsInXlaContext`.
    """
    if tf.executing_eagerly():
        return False
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_util

    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))


# Keras's `model.export` traces the model inside these modules (its LiteRT
# export goes through its SavedModel export: look for LiteRT first).
KERAS_EXPORT_MODULES = (
    ("keras.src.export.litert", "litert"),
    ("keras.src.export.", "saved_model"),
)


def keras_export_kind() -> str:
    """The export that Keras's `model.export` is tracing ("saved_model" or
    "litert"), found among the calling frames' modules; "" otherwise.

    Private: the module names of Keras's export code (`keras.src.export`).
    """
    modules = set()
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        modules.add(frame.f_globals.get("__name__", ""))
        frame = frame.f_back
    for prefix, kind in KERAS_EXPORT_MODULES:
        if any(m.startswith(prefix) for m in modules):
            return kind
    return ""


def model_input_layer(tensor: Any) -> keras.layers.InputLayer | None:
    """The `InputLayer` that made `tensor` if it is a Keras model input (a
    symbolic tensor straight from `keras.Input`), else None.

    Private: `KerasTensor._keras_history` (the operation that made it).
    """
    if not isinstance(tensor, keras.KerasTensor):
        return None
    operation = getattr(getattr(tensor, "_keras_history", None), "operation", None)
    return operation if isinstance(operation, keras.layers.InputLayer) else None
