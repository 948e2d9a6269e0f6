"""`--verify`: the written artefact, reloaded, against torch, judged by the
suite's rule (`converters.compare`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from converters.cli._common import EXIT_OK, EXIT_VERIFY_FAILED


def judge(
    served: Any,
    module: Any,
    runs: Sequence[tuple[Any, Any]],
    atol: float | None,
    rtol: float | None,
    *,
    absent: Sequence[str] = (),
    why: Callable[[], list[str]] = list,
) -> int:
    """Judges `served` against torch on each (input, lengths) run, prints the
    worst of each tensor over the runs, and the verdict; the exit code."""
    import converters

    worst: dict = {}
    rule = ""
    for x, lengths in runs:
        report = converters.compare(served, module, x, lengths, atol=atol, rtol=rtol)
        rule = report.rule
        for name, error in report.items():
            if name in absent:
                continue
            if name not in worst or _share(error) > _share(worst[name]):
                worst[name] = error
    report = converters.Report(worst, rule)
    print(converters.format_report(report))
    if report.ok:
        name = report.worst
        print(
            f"OK: every tensor within its bound (nearest: {name}, at "
            f"{_share(report[name]):.2f} of it)"
        )
        return EXIT_OK
    for name, error in report.items():
        if not error.ok:
            print(
                f"FAILED: {name}: max abs error {error.abs:.2e} > bound "
                f"{error.bound:.2e} (max rel {error.rel:.2e})",
                file=sys.stderr,
            )
    if atol is not None or rtol is not None:
        for reason in why():
            print(f"why: {reason}", file=sys.stderr)
        print(
            f"the bound: {rule}. To judge by another tolerance, pass --atol/--rtol.",
            file=sys.stderr,
        )
    else:
        print(
            "the written model differs from torch by more than float32 rounding "
            "explains (the rule above). To judge by a fixed tolerance instead, "
            "pass --atol and/or --rtol.",
            file=sys.stderr,
        )
    return EXIT_VERIFY_FAILED


def _share(error: Any) -> float:
    """How much of its bound an error uses."""
    return error.abs / max(error.bound, 1e-300)


class Served:
    """What `converters.compare` needs of a layer (its call convention,
    `compute_dtype` and `cell`), backed by a written artefact: `run(x,
    sequence_lengths)` returns the layer's outputs."""

    def __init__(self, layer: Any, compute_dtype: str, run: Any) -> None:
        self.cell = layer.cell
        self.one_step = "num_layers" not in layer.get_config()  # a cell layer
        self.compute_dtype = compute_dtype
        self._run = run

    def __call__(self, x: Any, sequence_lengths: Any = None) -> Any:
        return self._run(x, sequence_lengths)


def reload(path: str, fmt: str, layer):
    """The written artefact, as a callable with the layer's call convention."""
    import tflstm  # noqa: F401  (first: TensorFlow without its start-up lines)

    # isort: split
    import keras
    import numpy as np
    import tensorflow as tf

    import converters
    from converters.verify import output_names

    names = output_names(layer)
    states = layer.cell.spec.states
    one_step = "num_layers" not in layer.get_config()

    def as_torch(flat: list) -> Any:
        """Flat outputs in `names`' order, as torch returns them."""
        if one_step:
            return tuple(flat) if len(flat) > 1 else flat[0]
        final = tuple(flat[1:])
        return flat[0], final if len(final) > 1 else final[0]

    if fmt == "keras":
        model = keras.saving.load_model(path)

        def predict(feed: Any) -> Any:
            """Through `predict`, as users call it; a float64 model is called
            directly (`predict` casts float64 arrays to Keras's float32)."""
            if layer.compute_dtype != "float64":
                return model.predict(feed, batch_size=2, verbose=0)
            outputs = model(feed, training=False)
            return keras.tree.map_structure(np.asarray, outputs)

        def run_keras(x, sequence_lengths):  # `compare` calls it
            x = np.asarray(x, layer.compute_dtype)
            if one_step:  # input, h_0 (, c_0)
                zeros = np.zeros((len(x), layer.hidden_size), x.dtype)
                feed = [x, *[zeros] * len(states)][: len(model.inputs)]
                outputs = predict(feed)
                return as_torch(outputs if isinstance(outputs, list) else [outputs])
            if not layer.batch_first:  # the model is batch-major
                x = x.transpose(1, 0, 2)
            return converters.torch_layout(layer, predict(x))

        return Served(layer, layer.compute_dtype, run_keras)
    if fmt == "tflite":
        from tflstm.tflite import run_tflite

        flatbuffer, config = Path(path).read_bytes(), layer.get_config()

        def run_litert(x, sequence_lengths):
            result = run_tflite(  # quiet: it filters LiteRT's log lines
                flatbuffer, config, x, sequence_lengths=sequence_lengths
            )
            if one_step:
                return result
            output, final = result
            if isinstance(final, tuple) and final[-1] is None:
                # an int8 model's c_n with lengths is not produced: NaN
                c_n = np.full((*final[0].shape[:2], config["hidden_size"]), np.nan)
                final = (*final[:-1], c_n)
            return output, final

        return Served(layer, "float32", run_litert)
    served = tf.saved_model.load(path).signatures["serving_default"]

    def run_saved_model(x, sequence_lengths):
        kwargs = {"input": tf.constant(x)}
        if sequence_lengths is not None:
            kwargs["sequence_lengths"] = tf.constant(sequence_lengths, tf.int32)
        out = served(**kwargs)
        return as_torch([out[name] for name in names])

    return Served(layer, layer.compute_dtype, run_saved_model)
