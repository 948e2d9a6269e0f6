"""Which kernel runs a layer: one pure function of static facts.

`choose_kernel(facts)` is the whole policy, tested as a table
(tests/test_policy.py). `gather_facts` reads the facts that depend on where
the code runs (a GPU, the device scope, XLA, an export being traced); it is
the only impure part, and asks them of `tflstm.kernels.probes`, which tests patch
(e.g. "a GPU is visible" on a CPU machine).

The user's options, as in Keras:

- `use_cudnn`: `"auto"` (cuDNN on a GPU where it can serve the layer),
  `True` (cuDNN or an error), `False` (never).
- `kernel`: `"auto"`, or one of `"loop"`, `"block"`, `"xla"` to force the
  CPU/GPU kernel (see `tflstm.kernels` for what each is).

What `training` changes: dropout between layers, and which gradient is
used. `training=True` runs `bptt` (it saves the gates; the hand-written
gradient, weight gradients contracted in blocks, keeps the float32 error at
torch's level on long sequences), or cuDNN on a GPU; `training=False` runs an
inference kernel (nothing stored for a gradient; gradients through it are
still correct, by autodiff or recomputation).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from tflstm.kernels import probes

KERNEL_OPTIONS = ("auto", "loop", "block", "xla")
CUDNN_OPTIONS = ("auto", True, False)

# BlockLSTMV2 computes [x, h] @ w at every step; above this size the loop's
# blocked input projection wins (benchmarks/results.md).
BLOCK_MAX_HIDDEN = 256
# BlockLSTMV2 keeps seven (L, N, H) sequences (its gradient's): for small
# batches only, where that costs little memory (at L = 2,000, N = 32 it
# doubled a forward pass's peak memory).
BLOCK_MAX_BATCH = 8


class KernelFacts(NamedTuple):
    """Everything the choice depends on; all static (known when tracing)."""

    cell: str  # the cell's kind: "lstm", "gru" (`_tflstm.cells.CELLS`)
    training: bool
    dtype: str  # the computation's dtype, e.g. "float32"
    projection: bool  # proj_size > 0
    lengths: bool  # packed sequences (sequence_lengths or a mask)
    hidden_size: int
    batch: int | None  # the batch size where the trace knows it
    gpu: bool  # a GPU is visible and the device scope does not pin a CPU
    in_xla: bool  # traced inside an XLA computation (jit_compile)
    exporting: str  # "" or the export being traced: "saved_model", "litert"
    kernel: str = "auto"  # the user's option
    use_cudnn: str | bool = "auto"  # the user's option


def cudnn_can_serve(facts: KernelFacts) -> bool:
    """cuDNN's RNNs (its LSTM, its GRU) have no projection; they run
    float16/32/64."""
    return not facts.projection and facts.dtype in ("float16", "float32", "float64")


def block_can_serve(facts: KernelFacts) -> bool:
    """BlockLSTMV2 is an LSTM with no projection and no lengths (and no
    float64 CPU kernel)."""
    return (
        facts.cell == "lstm"
        and not facts.projection
        and not facts.lengths
        and facts.dtype in ("float16", "float32")
        and not facts.in_xla
    )


def choose_kernel(facts: KernelFacts) -> str:
    """The name of the kernel in `tflstm.kernels.KERNELS` that runs a layer.

    Raises:
        ValueError: when the user's explicit choice cannot serve the layer
            (`use_cudnn=True` without a GPU or with a projection,
            `kernel="block"` with a projection, lengths, float64 or XLA).
    """
    if facts.use_cudnn is True:
        if not (facts.gpu and cudnn_can_serve(facts) and not facts.in_xla):
            why = (
                "no GPU is visible (or the device scope is a CPU)"
                if not facts.gpu
                else "the layer runs inside XLA (jit_compile)"
                if facts.in_xla
                else "cuDNN has no projection (proj_size > 0)"
            )
            raise ValueError(
                "use_cudnn=True was specified, but cuDNN cannot serve this "
                f"layer: {why}. Pass use_cudnn='auto' to fall back to a "
                f"non-cuDNN kernel. Received: {_describe(facts)}"
            )
        return "cudnn"
    if (
        facts.use_cudnn == "auto"
        and facts.kernel == "auto"
        and facts.gpu
        and cudnn_can_serve(facts)
        and not facts.in_xla
        and not facts.exporting
    ):
        return "cudnn"

    if facts.kernel == "block":
        if not block_can_serve(facts):
            raise ValueError(
                "kernel='block' (TensorFlow's BlockLSTMV2) cannot serve this "
                "layer: it is an LSTM with no projection, no sequence lengths, "
                "no float64, and cannot be compiled by XLA. Pass kernel='auto'. "
                f"Received: {_describe(facts)}"
            )
        return "bptt" if facts.training else "block"
    if facts.exporting == "litert":
        return "litert"
    if facts.exporting:
        return "portable"
    if facts.kernel == "xla" and not facts.in_xla:
        return "bptt_xla" if facts.training else "loop_xla"
    if facts.training:
        return "bptt"
    if facts.kernel == "auto" and not facts.in_xla:
        return _fastest_inference_kernel(facts)
    return "loop"


def inline(facts: KernelFacts) -> bool:
    """Whether the kernel's ops are traced into the graph being built rather
    than called as a function traced once per process. Exports inline (the
    converters need static sizes, e.g. TFLite's fixed batch, and a SavedModel
    then holds plain ops), and so does XLA (compiled with the whole step)."""
    return facts.in_xla or bool(facts.exporting)


def _fastest_inference_kernel(facts: KernelFacts) -> str:
    """The default inference kernel on a CPU, by measurement
    (docs/guides/kernels.md, "Measurements behind the code"): BlockLSTMV2
    computes [x, h] @ w at every step with Eigen's matmul, the loop projects
    the input a block of steps at a time (with oneDNN's matmul where it is
    on). So BlockLSTMV2 wins for
    small batches and hidden sizes up to BLOCK_MAX_HIDDEN; it keeps seven
    (L, N, H) sequences, so it is used up to BLOCK_MAX_BATCH only. TensorFlow's
    oneDNN setting does not change the choice within those sizes, so it is
    not a fact. On a GPU without cuDNN (`use_cudnn=False`, a projection), the
    loop."""
    if (
        not facts.gpu  # measured on CPUs only
        and block_can_serve(facts)
        and facts.hidden_size <= BLOCK_MAX_HIDDEN
        and facts.batch is not None
        and facts.batch <= BLOCK_MAX_BATCH
    ):
        return "block"
    return "loop"


def _describe(facts: KernelFacts) -> str:
    return ", ".join(
        f"{k}={v!r}"
        for k, v in facts._asdict().items()
        if k in ("cell", "kernel", "use_cudnn", "dtype", "projection", "lengths", "gpu")
        or (k == "in_xla" and v)
    )


def gather_facts(
    *,
    cell: str,
    training: bool,
    dtype: str,
    projection: bool,
    lengths: bool,
    hidden_size: int,
    batch: int | None,
    kernel: str,
    use_cudnn: str | bool,
    exporting: str = "",
) -> KernelFacts:
    """The facts of a call, the environment probed now (at trace time).

    `exporting`: the export the caller is tracing ("saved_model", "litert");
    otherwise Keras's `model.export`, if it is the one tracing, says which
    (`probes.keras_export_kind`)."""
    scope = probes.device_scope()
    if not exporting and not tf.executing_eagerly():
        exporting = probes.keras_export_kind()
    return KernelFacts(
        cell=cell,
        training=training,
        dtype=dtype,
        projection=projection,
        lengths=lengths,
        hidden_size=hidden_size,
        batch=batch,
        gpu=probes.gpu_visible() and scope != "CPU",
        in_xla=probes.in_xla(),
        exporting=exporting,
        kernel=kernel,
        use_cudnn=use_cudnn,
    )


def supports_jit(*, kernel: str, use_cudnn: str | bool, projection: bool) -> bool:
    """Keras's `Layer.supports_jit`: False where the layer prefers a kernel
    that XLA cannot compile, so that Keras's `jit_compile="auto"` leaves XLA
    off (as `keras.layers.LSTM` does for cuDNN). Inside XLA the layer always
    runs an XLA kernel; only `kernel="block"` and `use_cudnn=True` refuse."""
    if kernel == "block" or use_cudnn is True:
        return False
    cudnn_preferred = use_cudnn == "auto" and kernel == "auto" and not projection
    return not (cudnn_preferred and probes.gpu_visible())
