"""Running an exported model in LiteRT with torch's conventions
(`run_tflite`), and reading its ops (`tflite_ops`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from _tflstm.extras import require
from tflstm._quiet import TFLITE_NOISE, filtered_stderr
from tflstm.tflite import _internals as internals
from tflstm.tflite.graphs import state_name


def tflite_ops(flatbuffer: bytes, *, subgraphs: bool = False) -> list[str]:
    """The builtin (or custom: "CUSTOM:<name>") op names of the model's main
    graph, in order; with `subgraphs=True`, of every subgraph (loop bodies
    included)."""
    return internals.op_names(flatbuffer, None if subgraphs else 0)


def _check_shapes(runner, feed: dict[str, np.ndarray], batch_axes: dict) -> None:
    """A static dimension of a model input must match the fed array's
    (LiteRT would resize it and fail in an op, or compute garbage), except
    the batch axes in `batch_axes` (input name -> axis), which resize."""
    details = runner.get_input_details()
    for name, value in feed.items():
        expected = list(details[name].get("shape_signature", details[name]["shape"]))
        if name in batch_axes and len(expected) == value.ndim:
            expected[batch_axes[name]] = -1
        if len(expected) != value.ndim or any(
            e not in (-1, v) for e, v in zip(expected, value.shape, strict=True)
        ):
            shown = tuple(None if e == -1 else int(e) for e in expected)
            raise ValueError(
                f"Expected `{name}` of shape {shown} (None: any size), as the "
                f"model was exported. Received: shape {value.shape}"
            )


def _dequantized(runner, result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Integer outputs (an int8 model's int16 c_n) as float32."""
    details = runner.get_output_details()
    for name, value in result.items():
        if value.dtype != np.float32:
            scale, zero_point = details[name]["quantization"]
            result[name] = ((value.astype(np.float32) - zero_point) * scale).astype(
                np.float32
            )
    return result


def run_tflite(
    flatbuffer: bytes,
    layer_config: dict[str, Any],
    input: np.ndarray,
    hx: Any = None,
    *,
    sequence_lengths: np.ndarray | None = None,
    num_threads: int = 2,
):
    """Runs an exported model in LiteRT with torch's conventions.

    Args:
        flatbuffer: What `export_tflite` returned.
        layer_config: The layer's `get_config()` (for the state layout).
        input: A batched input, laid out as the layer's.
        hx: The initial states as torch takes them, in torch's layout
            `(D*num_layers, N, H)`: `(h_0, c_0)` for an LSTM, `h_0` for a GRU;
            or None (zeros).
        sequence_lengths: (N,) lengths, for a model exported with
            `sequence_lengths=True`.
        num_threads: LiteRT's threads. Defaults to 2.

    Returns:
        As torch returns them, float32 numpy arrays in torch's layout:
        `(output, (h_n, c_n))` for an LSTM (`c_n` is None for an int8 model
        with `sequence_lengths`), `(output, h_n)` for a GRU; `(h_1, c_1)`
        for an exported `LSTMCell`, `h_1` for a `GRUCell` (their `input` is
        `(N, H_in)`). The model's own inputs say which cell it is.

    Raises:
        ValueError: when an input does not fit the model's static shape (a
            model exported with `fixed_length`; the batch of the unrolled and
            loop graphs).
    """
    litert = require("ai_edge_litert.interpreter", extra="litert", purpose="run_tflite")
    # LiteRT's line about its CPU delegate, written when it first runs.
    with filtered_stderr(TFLITE_NOISE):
        return _run(
            litert.Interpreter(model_content=flatbuffer, num_threads=num_threads),
            flatbuffer,
            layer_config,
            input,
            hx,
            sequence_lengths,
        )


def _run(interpreter, flatbuffer, layer_config, input, hx, sequence_lengths):
    """`run_tflite` once the interpreter exists."""
    runner = interpreter.get_signature_runner("serving_default")
    inputs = runner.get_input_details()
    if "num_layers" not in layer_config:  # a cell layer: one step
        states = ["h"] + (["c"] if "c_0" in inputs else [])
        zeros = np.zeros((len(input), layer_config["hidden_size"]), "float32")
        given = _as_tuple(hx, len(states)) or (zeros,) * len(states)
        feed = {"input": input}
        feed.update((f"{s}_0", v) for s, v in zip(states, given, strict=True))
        feed = {k: np.asarray(v, "float32") for k, v in feed.items()}
        out = _dequantized(runner, runner(**feed))
        return _as_torch(tuple(out[f"{s}_1"] for s in states))
    states = ["h"] + (["c"] if state_name("c_0", 0, 0) in inputs else [])
    d_count = 2 if layer_config["bidirectional"] else 1
    n_states = d_count * layer_config["num_layers"]
    batch = input.shape[0 if layer_config["batch_first"] else 1]
    sizes = {
        "h": layer_config.get("proj_size") or layer_config["hidden_size"],
        "c": layer_config["hidden_size"],
    }
    hx = _as_tuple(hx, len(states)) or tuple(
        np.zeros((n_states, batch, sizes[s]), "float32") for s in states
    )
    feed = {"input": np.asarray(input, "float32")}
    if sequence_lengths is not None:
        feed["sequence_lengths"] = np.asarray(sequence_lengths, "int32")
    names = [divmod(s, d_count) for s in range(n_states)]
    for s, (k, d) in enumerate(names):
        for state, value in zip(states, hx, strict=True):
            feed[state_name(f"{state}_0", k, d)] = np.asarray(value[s], "float32")
    ops = tflite_ops(flatbuffer)
    if internals.LSTM_OP in ops or internals.RNN_OP in ops:  # the fused ops resize
        batch_axes = {name: 0 for name in feed}
        batch_axes["input"] = 0 if layer_config["batch_first"] else 1
    else:
        batch_axes = {}
    _check_shapes(runner, feed, batch_axes)
    result = _dequantized(runner, runner(**feed))
    finals = tuple(
        np.stack([result[state_name(f"{s}_n", k, d)] for k, d in names])
        if state_name(f"{s}_n", 0, 0) in result
        else None
        for s in states
    )
    return result["output"], _as_torch(finals)


def _as_tuple(hx: Any, count: int) -> tuple | None:
    """torch's `hx` (a tuple of states, or one state) as a tuple."""
    if hx is None:
        return None
    return tuple(hx) if count > 1 else (hx,)


def _as_torch(states: tuple) -> Any:
    """States as torch returns them: a tuple, or one state alone."""
    return states if len(states) > 1 else states[0]
