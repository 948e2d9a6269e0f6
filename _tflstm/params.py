"""PyTorch's parameter names and shapes for `nn.LSTM` and `nn.LSTMCell`.

One pattern generates every name, as in `torch.nn.modules.rnn`: the layers
create their Keras variables from it, and the converters map checkpoints with
it, so the two can never disagree. Pure Python, so that reading a checkpoint
never imports Keras or TensorFlow.
"""

from __future__ import annotations

__all__ = ["lstm_cell_param_shapes", "lstm_param_name", "lstm_param_shapes"]


def lstm_param_name(kind: str, layer: int, direction: int) -> str:
    """E.g. `lstm_param_name("weight_ih", 1, 1) == "weight_ih_l1_reverse"`."""
    return f"{kind}_l{layer}{'_reverse' if direction == 1 else ''}"


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
    num_directions = 2 if bidirectional else 1
    out_size = proj_size or hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else out_size * num_directions
        for direction in range(num_directions):
            kinds = _gate_shapes(layer_input, hidden_size, out_size, bias)
            if proj_size:
                kinds["weight_hr"] = (proj_size, hidden_size)
            for kind, shape in kinds.items():
                shapes[lstm_param_name(kind, layer, direction)] = shape
    return shapes


def lstm_cell_param_shapes(
    input_size: int, hidden_size: int, bias: bool = True
) -> dict[str, tuple[int, ...]]:
    """The state_dict keys of `torch.nn.LSTMCell` with their shapes."""
    return _gate_shapes(input_size, hidden_size, hidden_size, bias)


def _gate_shapes(
    input_size: int, hidden_size: int, out_size: int, bias: bool
) -> dict[str, tuple[int, ...]]:
    """The gate weights (and biases) of one layer and direction, or of a cell,
    by kind, in torch's order."""
    shapes: dict[str, tuple[int, ...]] = {
        "weight_ih": (4 * hidden_size, input_size),
        "weight_hh": (4 * hidden_size, out_size),
    }
    if bias:
        shapes["bias_ih"] = (4 * hidden_size,)
        shapes["bias_hh"] = (4 * hidden_size,)
    return shapes
