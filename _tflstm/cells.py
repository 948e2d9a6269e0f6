"""What every part of tflstm knows about a recurrent cell without its math:
its name, its number of gates, its states, its extra parameters and the
nonlinearities it can be built with.

`CELLS` is the registry: the layers look their cell up here, the converters
tell a checkpoint's cells apart by the gate count (`weight_hh`'s rows over
its columns, `by_gates`), and the exports name their inputs and outputs
after `states`. The math of each cell is in `tflstm.cells`. Pure Python, so
that reading a checkpoint never imports Keras or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CELLS", "CellSpec", "by_gates"]


@dataclass(frozen=True)
class CellSpec:
    """One cell kind, as the layers, converters and exports see it.

    Attributes:
        kind: The registry key, e.g. `"lstm"`.
        gates: The number of gates stacked along `weight_ih`'s rows: `weight_ih`
            is `(gates * hidden_size, H_in)`.
        states: The states a layer carries, `h` first: `("h", "c")` for the
            LSTM, `("h",)` for the others. The exports' inputs and outputs are
            named `{state}_0` and `{state}_n` (`{state}_1` for a cell layer).
        projection: Whether the cell has PyTorch's `proj_size` (`weight_hr`).
        layer: The multi-layer class's name in `tflstm` (and torch.nn).
        cell: The one-step class's name in `tflstm` (and torch.nn).
        nonlinearities: The activations the cell can be built with, the
            default first (an RNN's `nonlinearity=`); empty where the cell
            has no such choice. A state_dict does not record it.
    """

    kind: str
    gates: int
    states: tuple[str, ...]
    projection: bool
    layer: str
    cell: str
    nonlinearities: tuple[str, ...] = ()


LSTM = CellSpec("lstm", 4, ("h", "c"), True, "LSTM", "LSTMCell")
GRU = CellSpec("gru", 3, ("h",), False, "GRU", "GRUCell")
RNN = CellSpec("rnn", 1, ("h",), False, "RNN", "RNNCell", ("tanh", "relu"))

CELLS: dict[str, CellSpec] = {spec.kind: spec for spec in (LSTM, GRU, RNN)}


def by_gates(gates: int) -> CellSpec | None:
    """The cell whose `weight_hh` has `gates` times as many rows as columns
    (a projected LSTM's has 4 x hidden_size rows over proj_size columns: its
    rows are a multiple of 4 x its `weight_hr`'s columns instead; an RNN's
    is square)."""
    for spec in CELLS.values():
        if spec.gates == gates:
            return spec
    return None
