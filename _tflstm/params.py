"""PyTorch's parameter names and shapes for its recurrent modules
(`nn.LSTM`, `nn.LSTMCell`, and every cell in `_tflstm.cells.CELLS`).

One pattern generates every name, as in `torch.nn.modules.rnn`: the layers
create their Keras variables from it, and the converters map checkpoints with
it, so the two can never disagree. Pure Python, so that reading a checkpoint
never imports Keras or TensorFlow.
"""

from __future__ import annotations

from _tflstm.cells import CELLS, CellSpec

__all__ = [
    "cell_param_shapes",
    "layer_param_shapes",
    "lstm_cell_param_shapes",
    "lstm_param_shapes",
    "param_name",
]


def param_name(kind: str, layer: int, direction: int) -> str:
    """E.g. `param_name("weight_ih", 1, 1) == "weight_ih_l1_reverse"` (also the
    exports' state names: `param_name("h_0", 0, 1) == "h_0_l0_reverse"`)."""
    return f"{kind}_l{layer}{'_reverse' if direction == 1 else ''}"


def layer_param_shapes(
    spec: CellSpec,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    bidirectional: bool = False,
    proj_size: int = 0,
) -> dict[str, tuple[int, ...]]:
    """The state_dict keys of torch's multi-layer module of `spec`'s cell
    (`nn.LSTM`, ...) with their shapes, in torch's order."""
    num_directions = 2 if bidirectional else 1
    out_size = proj_size or hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else out_size * num_directions
        for direction in range(num_directions):
            kinds = _gate_shapes(spec, layer_input, hidden_size, out_size, bias)
            if proj_size:
                kinds["weight_hr"] = (proj_size, hidden_size)
            for kind, shape in kinds.items():
                shapes[param_name(kind, layer, direction)] = shape
    return shapes


def cell_param_shapes(
    spec: CellSpec, input_size: int, hidden_size: int, bias: bool = True
) -> dict[str, tuple[int, ...]]:
    """The state_dict keys of torch's one-step module of `spec`'s cell
    (`nn.LSTMCell`, ...) with their shapes."""
    return _gate_shapes(spec, input_size, hidden_size, hidden_size, bias)


def lstm_param_shapes(
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    bidirectional: bool = False,
    proj_size: int = 0,
) -> dict[str, tuple[int, ...]]:
    """The state_dict keys of `torch.nn.LSTM` with their shapes, in torch's order.

    >>> lstm_param_shapes(3, 4, proj_size=2)
    {'weight_ih_l0': (16, 3), 'weight_hh_l0': (16, 2), 'bias_ih_l0': (16,), \
'bias_hh_l0': (16,), 'weight_hr_l0': (2, 4)}
    """
    return layer_param_shapes(
        CELLS["lstm"], input_size, hidden_size, num_layers, bias, bidirectional,
        proj_size,
    )  # fmt: skip


def lstm_cell_param_shapes(
    input_size: int, hidden_size: int, bias: bool = True
) -> dict[str, tuple[int, ...]]:
    """The state_dict keys of `torch.nn.LSTMCell` with their shapes."""
    return cell_param_shapes(CELLS["lstm"], input_size, hidden_size, bias)


def _gate_shapes(
    spec: CellSpec, input_size: int, hidden_size: int, out_size: int, bias: bool
) -> dict[str, tuple[int, ...]]:
    """The gate weights (and biases) of one layer and direction, or of a cell,
    by kind, in torch's order."""
    rows = spec.gates * hidden_size
    shapes: dict[str, tuple[int, ...]] = {
        "weight_ih": (rows, input_size),
        "weight_hh": (rows, out_size),
    }
    if bias:
        shapes["bias_ih"] = (rows,)
        shapes["bias_hh"] = (rows,)
    return shapes
