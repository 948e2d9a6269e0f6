"""tflstm <-> stock Keras: `keras.layers.LSTM`, `keras.layers.GRU`,
`keras.layers.SimpleRNN` and `keras.layers.Bidirectional`.

Keras stores its kernels transposed, `(H_in, G*H)`, and orders the gates its
own way. The map, as data (`KERAS`, per cell):

- LSTM: the gate order is torch's (i, f, g, o) and Keras has one bias:

      kernel           = weight_ih.T
      recurrent_kernel = weight_hh.T
      bias             = bias_ih + bias_hh     (the only loss of information)

  and back `bias_ih = bias`, `bias_hh = 0`. Keras has no projection, so layers
  with `proj_size > 0` cannot be converted.
- GRU: Keras's `reset_after=True` is torch's GRU (the reset gate multiplies
  the recurrent part of the candidate, its bias included), with the gates
  ordered (z, r, h) instead of torch's (r, z, n) and a `(2, 3*H)` bias of
  both sides, so the map is exact both ways:

      kernel           = weight_ih.T, gate blocks reordered
      recurrent_kernel = weight_hh.T, gate blocks reordered
      bias             = [bias_ih, bias_hh], gate blocks reordered

  A Keras GRU with `reset_after=False` computes another function (the reset
  gate before the matmul) and is refused.
- RNN: `keras.layers.SimpleRNN` with `activation` the RNN's nonlinearity
  (tanh or relu) and one bias, `bias_ih + bias_hh`, as for the LSTM.

Keras is batch-major.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# isort: split
import keras
import numpy as np

from _tflstm.cells import CELLS
from _tflstm.params import param_name
from converters.torch_io import layer_class, load_weights, to_torch
from tflstm._recurrent import RecurrentLayer


class KerasCell(NamedTuple):
    """How one cell maps to its stock Keras layer."""

    layer: type[keras.layers.Layer]  # keras.layers.LSTM, keras.layers.GRU
    order: tuple[int, ...]  # Keras's gate blocks, as torch's indices
    bias_pair: bool  # Keras keeps both biases (a (2, G*H) bias)
    # The activations that make it torch's cell (checked when reading back);
    # "activation" absent: it is the cell's nonlinearity (an RNN's).
    activations: dict[str, str]


_GATED = {"activation": "tanh", "recurrent_activation": "sigmoid"}
KERAS = {
    "lstm": KerasCell(keras.layers.LSTM, (0, 1, 2, 3), False, _GATED),
    "gru": KerasCell(keras.layers.GRU, (1, 0, 2), True, _GATED),
    "rnn": KerasCell(keras.layers.SimpleRNN, (0,), False, {}),
}
KERAS_LAYERS: tuple[type[keras.layers.Layer], ...] = tuple(
    k.layer for k in KERAS.values()
)


def _reorder(a: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """`a`'s gate blocks along its last axis, in `order` (its own inverse
    for the orders above: each is a swap or the identity)."""
    blocks = np.split(a, len(order), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1)


def keras_cell_weights(
    kind: str, params: dict[str, np.ndarray], layer: int, direction: int
) -> list:
    """`[kernel, recurrent_kernel, (bias)]` of one Keras layer of cell `kind`
    ("lstm", "gru") from torch's weights."""
    spec = KERAS[kind]

    def get(name: str) -> np.ndarray:
        return params[param_name(name, layer, direction)]

    weights = [
        _reorder(get("weight_ih").T, spec.order),
        _reorder(get("weight_hh").T, spec.order),
    ]
    if param_name("bias_ih", layer, direction) in params:
        b_ih, b_hh = (
            _reorder(get("bias_ih"), spec.order),
            _reorder(get("bias_hh"), spec.order),
        )
        weights.append(np.stack([b_ih, b_hh]) if spec.bias_pair else b_ih + b_hh)
    return weights


def torch_cell_weights(kind: str, weights: list, layer: int, direction: int) -> dict:
    """The inverse of `keras_cell_weights`: an LSTM's (an RNN's) summed bias
    goes to `bias_ih` (and zeros to `bias_hh`); a GRU's two are kept."""
    spec = KERAS[kind]
    names = {
        name: param_name(name, layer, direction)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    params = {
        names["weight_ih"]: _reorder(weights[0], spec.order).T,
        names["weight_hh"]: _reorder(weights[1], spec.order).T,
    }
    if len(weights) == 3:
        bias = _reorder(weights[2], spec.order)
        if spec.bias_pair:
            params[names["bias_ih"]], params[names["bias_hh"]] = bias[0], bias[1]
        else:
            params[names["bias_ih"]] = bias
            params[names["bias_hh"]] = np.zeros_like(bias)
    return params


def to_keras(layer: Any) -> keras.Sequential:
    """A batch-major `keras.Sequential` of `keras.layers.LSTM` (for a
    `tflstm.LSTM`), `keras.layers.GRU(reset_after=True)` (for a
    `tflstm.GRU`) or `keras.layers.SimpleRNN(activation=nonlinearity)` (for
    a `tflstm.RNN`), wrapped in `Bidirectional` when bidirectional,
    computing the layer's `output`.

    Inter-layer dropout becomes `keras.layers.Dropout` between the layers (the
    same semantics as torch). The stack takes `(N, L, H_in)` and returns
    `(N, L, D*hidden_size)`, whatever the layer's `batch_first`.

    Raises:
        ValueError: for an LSTM with `proj_size > 0` (Keras has no projection).
    """
    if not isinstance(layer, RecurrentLayer) or layer.cell.spec.kind not in KERAS:
        raise TypeError(
            "Expected a tflstm.LSTM, GRU or RNN. Received: an object of type "
            f"{type(layer).__name__}"
        )
    if layer.proj_size:
        raise ValueError(
            "keras.layers.LSTM has no projection, so a tflstm.LSTM with "
            "proj_size > 0 cannot be converted to stock Keras layers. "
            f"Received: proj_size={layer.proj_size}"
        )
    kind = layer.cell.spec.kind
    params = to_torch(layer)
    policy = layer.dtype_policy
    stack: list[keras.layers.Layer] = [keras.Input((None, layer.input_size))]
    options: dict[str, Any] = {"reset_after": True} if kind == "gru" else {}
    if layer.cell.spec.nonlinearities:
        options["activation"] = layer.nonlinearity
    for k in range(layer.num_layers):
        if k and layer.dropout:
            stack.append(keras.layers.Dropout(layer.dropout, name=f"dropout_l{k}"))
        recurrent = KERAS[kind].layer(
            layer.hidden_size,
            return_sequences=True,
            use_bias=layer.bias,
            dtype=policy,
            name=f"{kind}_l{k}",
            **options,
        )
        if layer.bidirectional:
            recurrent = keras.layers.Bidirectional(
                recurrent, dtype=policy, name=f"bidirectional_l{k}"
            )
        stack.append(recurrent)
    model = keras.Sequential(stack, name=f"{layer.name}_keras")
    recurrent_layers: list[keras.layers.Layer] = [
        lyr
        for lyr in model.layers
        if isinstance(lyr, (*KERAS_LAYERS, keras.layers.Bidirectional))
    ]
    for k, keras_layer in enumerate(recurrent_layers):
        weights = [
            w
            for d in range(layer.num_directions)
            for w in keras_cell_weights(kind, params, k, d)
        ]
        keras_layer.set_weights(weights)
    return model


def _activation(recurrent: Any, attr: str) -> Any:
    got = keras.activations.serialize(getattr(recurrent, attr))
    return got if isinstance(got, str) else got.get("config", got)


def _kind_of(recurrent: Any, where: str) -> tuple[str, str]:
    """The cell of a stock Keras layer, checked to compute torch's function,
    and its nonlinearity ("" for a cell without that option)."""
    kinds = [k for k, spec in KERAS.items() if isinstance(recurrent, spec.layer)]
    if not kinds:
        raise ValueError(
            "Expected keras.layers.LSTM, GRU or SimpleRNN "
            f"{where}. Received: {type(recurrent).__name__}"
        )
    kind = kinds[0]
    name = f"keras.layers.{KERAS[kind].layer.__name__}"
    torch_name = CELLS[kind].layer
    choices = CELLS[kind].nonlinearities
    expected = dict(KERAS[kind].activations)
    for attr, want in expected.items():
        got = _activation(recurrent, attr)
        if got != want:
            raise ValueError(
                f"Expected {name} {where} with {attr}={want!r}, as "
                f"torch.nn.{torch_name} computes. Received: {attr}={got!r}"
            )
    nonlinearity = ""
    if choices:
        nonlinearity = _activation(recurrent, "activation")
        if nonlinearity not in choices:
            options = " or ".join(repr(c) for c in choices)
            raise ValueError(
                f"Expected {name} {where} with activation={options}, the "
                f"nonlinearities of torch.nn.{CELLS[kind].layer}. Received: "
                f"activation={nonlinearity!r}"
            )
    if kind == "gru" and not recurrent.reset_after:
        raise ValueError(
            f"Expected {name} {where} with reset_after=True: torch.nn.GRU applies "
            "the reset gate after the recurrent matmul (its bias included); "
            "reset_after=False applies it before, another function. Received: "
            "reset_after=False"
        )
    if not recurrent.built:
        raise ValueError(f"Expected a built {name} {where}. Received: unbuilt")
    return kind, nonlinearity


def from_keras(
    source: Any, *, batch_first: bool = True, dtype: str | None = None
) -> Any:
    """Reads a stock Keras LSTM, GRU or SimpleRNN stack back into a
    `tflstm.LSTM`, `tflstm.GRU` or `tflstm.RNN`.

    Args:
        source: A `keras.layers.LSTM`, `keras.layers.GRU`
            (`reset_after=True`) or `keras.layers.SimpleRNN` (tanh or relu),
            a `keras.layers.Bidirectional` around one,
            or a model whose layers are those, all of one kind, optionally with
            `keras.layers.Dropout` of one rate between them (`to_keras`
            writes such a `keras.Sequential`).
        batch_first: The layer's `batch_first`. Defaults to `True`, as Keras
            is batch-major.
        dtype: Defaults to the Keras layers' compute dtype.

    Returns:
        A `tflstm.LSTM` whose `bias_ih` holds Keras's single bias and
        `bias_hh` zeros (same function, as Keras only knows their sum), or a
        `tflstm.GRU` with both of Keras's biases, or a `tflstm.RNN` whose
        `bias_ih` holds Keras's bias (as for the LSTM).
    """
    wrappers = (*KERAS_LAYERS, keras.layers.Bidirectional)
    if isinstance(source, wrappers):
        items = [source]
    elif isinstance(source, keras.Model):
        items = [
            lyr for lyr in source.layers if not isinstance(lyr, keras.layers.InputLayer)
        ]
    else:
        raise TypeError(
            "Expected a keras.layers.LSTM, GRU or SimpleRNN, a "
            "keras.layers.Bidirectional or a keras.Model of them. Received: an "
            "object of type "
            f"{type(source).__name__}"
        )
    recurrent, rates = [], set()
    for item in items:
        if isinstance(item, keras.layers.Dropout):
            rates.add(float(item.rate))
        elif isinstance(item, wrappers):
            recurrent.append(item)
        else:
            raise ValueError(
                "Expected only keras.layers.LSTM, GRU or SimpleRNN, Bidirectional and "
                f"Dropout layers. Received: {type(item).__name__} {item.name!r}"
            )
    if not recurrent:
        raise ValueError(
            "Expected at least one keras.layers.LSTM, GRU or SimpleRNN. Received: none"
        )
    if len(rates) > 1:
        raise ValueError(
            "Expected one dropout rate between all layers, as torch's recurrent "
            f"modules have. Received: rates {sorted(rates)}"
        )
    directions, kinds = _directions(recurrent)
    if len(set(kinds)) > 1:
        raise ValueError(
            "Expected layers of one kind, as a torch module has. Received: "
            f"{', '.join(sorted({f'{k} ({n})' if n else k for k, n in kinds}))} "
            "layers"
        )
    kind, nonlinearity = kinds[0]
    first = directions[0][0]
    hidden, bias = first.units, first.use_bias
    params = {}
    for k, pair in enumerate(directions):
        if len(pair) != len(directions[0]) or any(
            r.units != hidden or r.use_bias != bias for r in pair
        ):
            raise ValueError(
                "Expected every layer with the same units, use_bias and "
                "directions, as a torch module has. Received: layer "
                f"{k} ({recurrent[k].name!r}) differs from layer 0"
            )
        for d, r in enumerate(pair):
            params.update(torch_cell_weights(kind, r.get_weights(), k, d))
    options = {"nonlinearity": nonlinearity} if nonlinearity else {}
    layer = layer_class(CELLS[kind].layer)(
        int(params["weight_ih_l0"].shape[1]),
        hidden,
        **options,
        num_layers=len(directions),
        bias=bias,
        batch_first=batch_first,
        dropout=rates.pop() if rates else 0.0,
        bidirectional=len(directions[0]) == 2,
        dtype=dtype or first.compute_dtype,
    )
    load_weights(layer, params)
    return layer


def _directions(recurrent: list) -> tuple[list[list], list[tuple[str, str]]]:
    """Each layer's Keras layers by direction, and each one's cell kind and
    nonlinearity."""
    directions, kinds = [], []
    for k, item in enumerate(recurrent):
        where = f"at position {k} ({item.name!r})"
        if isinstance(item, keras.layers.Bidirectional):
            if item.merge_mode != "concat":
                raise ValueError(
                    f"Expected Bidirectional {where} with merge_mode='concat', as "
                    f"torch concatenates. Received: merge_mode={item.merge_mode!r}"
                )
            pair = [item.forward_layer, item.backward_layer]
        else:
            if item.go_backwards:
                raise ValueError(
                    f"Expected keras.layers.{type(item).__name__} {where} with "
                    "go_backwards=False. Received: go_backwards=True"
                )
            pair = [item]
        kinds += [_kind_of(r, where) for r in pair]
        directions.append(pair)
    return directions, kinds
