"""Export for phones: a `.tflite` file (LiteRT) with builtin ops only.

`export_tflite` builds one of three graphs, with the same inputs and outputs:

- `"fused"`: one `UNIDIRECTIONAL_SEQUENCE_LSTM` op per layer and direction,
  TFLite's own LSTM kernel: linear in L, the length resizable at run time.
  An RNN's is `UNIDIRECTIONAL_SEQUENCE_RNN` with its tanh or relu fused
  (its two biases summed, as no gate sits between them). A GRU has none
  (TFLite's custom GRU op applies the reset gate before the matmul).
- `"unrolled"`: for a fixed length L and batch N: the input projection of
  all L*N rows as one FULLY_CONNECTED, then L unrolled steps of
  FULLY_CONNECTED, LOGISTIC, TANH, MUL and ADD ops, which LiteRT's default
  XNNPACK delegate runs. The fused op is not delegated, and its kernel loses
  to XNNPACK from a batch of 2 on.
- `"loop"`: the layer's inference loop as WHILE loops of builtin ops (two per
  layer and direction: blocks of steps, then the rest), for runtimes without
  the fused op; quadratic in L (TFLite's WHILE copies every loop-carried
  tensor at each iteration).

`graph="auto"` (the default) chooses by measurement (`choose_graph`; the
figures are in docs/guides/export.md, from `make bench-tflite`):
the fused op for a dynamic length, a fixed length above `UNROLL_MAX_LENGTH`
(unrolling more costs conversion time and about 2 KB of file per step),
`quantize="int8"` and an LSTM's batch size of 1; the unrolled graph for a
fixed length otherwise; the loop where the cell has no fused op (a GRU's
dynamic length).

Quantization (`quantize=`), as TFLite defines it:

- `"dynamic"`: int8 weights, float activations ("hybrid" kernels, which
  quantize their inputs per row at each call). Scales: one per output row in
  the unrolled and loop graphs' FULLY_CONNECTED ops, one per gate matrix in
  the fused op. The converter keeps a layer in float32 when a gate matrix
  has fewer than 1,024 weights; a heavy-tailed matrix (`HEAVY_TAIL_RATIO`)
  stays float32 too: in the unrolled and loop graphs that matrix alone, in
  the fused op its whole layer and direction.
- `"int8"`: full integer: int8 activations and weights, TFLite's 16-bit
  cell state, the ranges calibrated on `representative_data` (it clips
  whatever exceeds them: calibrate on real inputs). The fused op only (an
  unrolled graph's int8 cell state is too coarse). TFLite's integer LSTM
  kernel is slow on x86 CPUs: int8 is for integer-only hardware. With
  `sequence_lengths`, the model has no `c_n` outputs (`run_tflite` returns
  None): the integer kernel cannot carry the cell state through the padding
  (the float graphs saturate the input and forget gates there, which int8
  cannot do exactly). `output` and `h_n` are right.
- `"float16"`: float16 weights that DEQUANTIZE ops widen once, float32 math:
  half the float file, for the models 8 bits do not serve.

Each mode is held to `QUANTIZED_RTOL`. 8 bits do not serve a model with a long
memory: rounding errors add up over the steps the cell state keeps, so on
published checkpoints both 8-bit modes miss their tolerance while float16
meets it (docs/guides/export.md; benchmarks/quantize_real.md).
`export_tflite` warns (`QuantizationWarning`) where it predicts a miss
(`quantization_risks`): int8 with heavy-tailed weights, and either mode when
the cell state exceeds `LONG_MEMORY_CELL_STATE` on `representative_data`.

The model's inputs are `input` (`(L, N, H_in)`, or `(N, L, H_in)` with
`batch_first`), one `h_0_l{k}[_reverse]` (N, H_out) and `c_0_l{k}[_reverse]`
(N, H_cell) per layer and direction (a GRU's and an RNN's: `h_0` only), and
with `sequence_lengths=True` an int32 `sequence_lengths` (N,); all are set
at every call, so calls are independent, and feeding a call the previous
`h_n`/`c_n` streams a sequence chunk by chunk. Outputs: `output`, `h_n_l{k}[_reverse]`,
`c_n_l{k}[_reverse]` (an int8 model's `c_n` is the int16 cell state with its
scale; `run_tflite` dequantizes it). `run_tflite` calls such a model with
torch's conventions.

The fused op needs three fixes that the converter cannot express (the
converter's cell clip of 10, which torch does not have; the projection;
the final states), and the RNN's op is written from an LSTM's (the
converter has no composite for it): tflstm/tflite/_internals.py holds them,
with every other dependency on converter internals.

Keras's own `model.export(path, format="litert")` of a model holding a
`tflstm.LSTM` gives builtin ops only too, with Keras's dynamic batch and
length: the layer then runs `tflstm.kernels.litert.buffer_loop_forward`, a
while loop writing into a preallocated buffer, whose time grows with the
square of L (docs/guides/export.md). `export_tflite` is the linear
path.
"""

from tflstm.tflite.export import export_tflite
from tflstm.tflite.graphs import GRAPHS, UNROLL_MAX_LENGTH, choose_graph
from tflstm.tflite.quantize import (
    HEAVY_TAIL_RATIO,
    LONG_MEMORY_CELL_STATE,
    QUANTIZE_MODES,
    QUANTIZED_RTOL,
    QuantizationWarning,
    quantization_risks,
)
from tflstm.tflite.runtime import run_tflite, tflite_ops

__all__ = [
    "GRAPHS",
    "HEAVY_TAIL_RATIO",
    "LONG_MEMORY_CELL_STATE",
    "QUANTIZED_RTOL",
    "QUANTIZE_MODES",
    "UNROLL_MAX_LENGTH",
    "QuantizationWarning",
    "choose_graph",
    "export_tflite",
    "quantization_risks",
    "run_tflite",
    "tflite_ops",
]
