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


def reload(path: str, fmt: str, layer):
    """The written artefact, as a callable with the layer's call convention."""
    import tflstm  # first: TensorFlow without its start-up lines

    # isort: split
    import keras
    import numpy as np
    import tensorflow as tf

    import converters

    if fmt == "keras":
        model = keras.saving.load_model(path)

        class ServedKeras:  # `compare` calls it as the layer: through predict
            compute_dtype = layer.compute_dtype

            def __call__(self, x, sequence_lengths=None):
                x = np.asarray(x, self.compute_dtype)
                if isinstance(layer, tflstm.LSTMCell):  # input, h_0, c_0
                    zeros = np.zeros((len(x), layer.hidden_size), x.dtype)
                    feed = [x, zeros, zeros][: len(model.inputs)]
                    return tuple(model.predict(feed, batch_size=2, verbose=0))
                if not layer.batch_first:  # the model is batch-major
                    x = x.transpose(1, 0, 2)
                outputs = model.predict(x, batch_size=2, verbose=0)
                return converters.torch_layout(layer, outputs)

        return ServedKeras()
    if fmt == "tflite":
        from tflstm.tflite import run_tflite

        flatbuffer, config = Path(path).read_bytes(), layer.get_config()

        class ServedTFLite:  # what `compare` needs of a layer, backed by LiteRT
            compute_dtype = "float32"

            def __call__(self, x, sequence_lengths=None):
                result = run_tflite(  # quiet: it filters LiteRT's log lines
                    flatbuffer, config, x, sequence_lengths=sequence_lengths
                )
                if isinstance(layer, tflstm.LSTMCell):  # (h_1, c_1)
                    return result
                output, (h_n, c_n) = result
                if c_n is None:  # not produced: left out of the report
                    c_n = np.full((*h_n.shape[:2], config["hidden_size"]), np.nan)
                return output, (h_n, c_n)

        return ServedTFLite()
    served = tf.saved_model.load(path).signatures["serving_default"]

    class Served:  # what `compare` needs of a layer, backed by the SavedModel
        compute_dtype = layer.compute_dtype

        def __call__(self, x, sequence_lengths=None):
            kwargs = {"input": tf.constant(x)}
            if sequence_lengths is not None:
                kwargs["sequence_lengths"] = tf.constant(sequence_lengths, tf.int32)
            out = served(**kwargs)
            if "h_1" in out:
                return out["h_1"], out["c_1"]
            return out["output"], (out["h_n"], out["c_n"])

    return Served()
