"""Canaries for the private TensorFlow and Keras APIs in `tflstm.kernels.probes`:
each fails, naming the API, when an upgrade changes what tflstm relies on."""

import importlib.util
import os

import keras
import tensorflow as tf

from tflstm.kernels import probes as _probes


def test_onednn_enabled_reads_pywrap_util_port():
    """`_pywrap_util_port.IsMklEnabled` answers as TF_ENABLE_ONEDNN_OPTS says
    (the suite runs with both settings; unset, the CPU decides)."""
    enabled = _probes.onednn_enabled()
    assert isinstance(enabled, bool)
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting in ("0", "1"):
        assert enabled == (setting == "1"), "_pywrap_util_port.IsMklEnabled changed"


def test_device_scope_reads_the_eager_context_and_device_function_stack():
    assert _probes.device_scope() == ""
    with tf.device("/CPU:0"):
        assert _probes.device_scope() == "CPU", "eager context.device_name changed"
    seen = {}

    @tf.function
    def traced():
        seen["none"] = _probes.device_scope()
        with tf.device("/CPU:0"):
            seen["cpu"] = _probes.device_scope()
        return tf.constant(0)

    traced()
    assert seen == {"none": "", "cpu": "CPU"}, "Graph._device_function_stack changed"


def test_in_xla_reads_control_flow_util():
    seen = []

    def probe():
        seen.append(_probes.in_xla())
        return tf.constant(0)

    tf.function(probe, jit_compile=True)()
    tf.function(probe)()
    probe()
    assert seen == [True, False, False], "GraphOrParentsInXlaContext changed"


def test_keras_export_modules_exist_and_are_seen(tmp_path):
    """Keras traces `model.export` inside `keras.src.export`: the module names
    exist, and a layer traced by it sees a "saved_model" export."""
    for prefix, _ in _probes.KERAS_EXPORT_MODULES:
        name = prefix.rstrip(".")
        assert importlib.util.find_spec(name) is not None, f"{name} is gone"
    seen = []

    class Spy(keras.layers.Layer):
        def call(self, x):
            seen.append(_probes.keras_export_kind())
            return x

    model = keras.Sequential([keras.Input((3,)), Spy()])
    model.export(str(tmp_path / "spy"), format="tf_saved_model", verbose=False)
    assert "saved_model" in seen, "Keras's export no longer traces in keras.src.export"
    assert _probes.keras_export_kind() == ""


def test_model_input_layer_reads_keras_history():
    """`KerasTensor._keras_history`: which operation made a symbolic tensor."""
    inputs = keras.Input((None, 4), name="x")
    layer = _probes.model_input_layer(inputs)
    assert isinstance(layer, keras.layers.InputLayer) and layer.name == "x"
    assert _probes.model_input_layer(keras.ops.transpose(inputs, (1, 0, 2))) is None
    assert _probes.model_input_layer(keras.layers.Identity()(inputs)) is None
    assert _probes.model_input_layer(keras.KerasTensor((None, 3, 4))) is None
    assert _probes.model_input_layer(tf.zeros((2, 3, 4))) is None


FACTS = dict(
    cell="lstm",
    training=False,
    dtype="float32",
    projection=False,
    lengths=False,
    hidden_size=4,
    batch=1,
    kernel="auto",
    use_cudnn="auto",
)


def test_the_policy_reads_the_environment_through_the_probes(monkeypatch):
    """Patching a probe changes the facts (the policy tests rely on it)."""
    from tflstm.kernels import policy as _policy

    assert not _policy.gather_facts(**FACTS).gpu
    monkeypatch.setattr(_probes, "gpu_visible", lambda: True)
    assert _policy.gather_facts(**FACTS).gpu
    monkeypatch.setattr(_probes, "device_scope", lambda: "CPU")
    assert not _policy.gather_facts(**FACTS).gpu  # a CPU scope hides the GPU
    monkeypatch.setattr(_probes, "in_xla", lambda: True)
    assert _policy.gather_facts(**FACTS).in_xla
