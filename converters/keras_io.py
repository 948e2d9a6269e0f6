"""tflstm <-> stock Keras: `keras.layers.LSTM` and `keras.layers.Bidirectional`.

Keras's LSTM keeps the gate order (i, f, g, o) but stores its kernels
transposed, `(H_in, 4*H)`, and has a single bias. The map, as data:

    kernel           = weight_ih.T
    recurrent_kernel = weight_hh.T
    bias             = bias_ih + bias_hh     (the only loss of information)

and back: `bias_ih = bias`, `bias_hh = 0`. Keras has no projection, so layers
with `proj_size > 0` cannot be converted. Keras is batch-major.
"""

from __future__ import annotations

from typing import Any

import tflstm  # before Keras: it imports TensorFlow without the start-up lines

# isort: split
import keras
import numpy as np

from _tflstm.params import param_name
from converters.torch_io import load_weights, to_torch


def keras_cell_weights(
    params: dict[str, np.ndarray], layer: int, direction: int
) -> list:
    """`[kernel, recurrent_kernel, (bias)]` of one Keras LSTM from torch's weights."""

    def get(kind: str) -> np.ndarray:
        return params[param_name(kind, layer, direction)]

    weights = [get("weight_ih").T, get("weight_hh").T]
    if param_name("bias_ih", layer, direction) in params:
        weights.append(get("bias_ih") + get("bias_hh"))
    return weights


def torch_cell_weights(weights: list, layer: int, direction: int) -> dict:
    """The inverse of `keras_cell_weights`: the summed bias goes to `bias_ih`."""
    names = {
        kind: param_name(kind, layer, direction)
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    params = {names["weight_ih"]: weights[0].T, names["weight_hh"]: weights[1].T}
    if len(weights) == 3:
        params[names["bias_ih"]] = weights[2]
        params[names["bias_hh"]] = np.zeros_like(weights[2])
    return params


def to_keras(layer: tflstm.LSTM) -> keras.Sequential:
    """A batch-major `keras.Sequential` of `keras.layers.LSTM` (wrapped in
    `Bidirectional` when bidirectional) computing the layer's `output`.

    Inter-layer dropout becomes `keras.layers.Dropout` between the layers (the
    same semantics as torch). The stack takes `(N, L, H_in)` and returns
    `(N, L, D*hidden_size)`, whatever the layer's `batch_first`.

    Raises:
        ValueError: for a layer with `proj_size > 0` (Keras has no projection).
    """
    if not isinstance(layer, tflstm.LSTM):
        raise TypeError(
            "Expected a tflstm.LSTM. Received: an object of type "
            f"{type(layer).__name__}"
        )
    if layer.proj_size:
        raise ValueError(
            "keras.layers.LSTM has no projection, so a tflstm.LSTM with "
            "proj_size > 0 cannot be converted to stock Keras layers. "
            f"Received: proj_size={layer.proj_size}"
        )
    params = to_torch(layer)
    policy = layer.dtype_policy
    stack: list[keras.layers.Layer] = [keras.Input((None, layer.input_size))]
    for k in range(layer.num_layers):
        if k and layer.dropout:
            stack.append(keras.layers.Dropout(layer.dropout, name=f"dropout_l{k}"))
        lstm = keras.layers.LSTM(
            layer.hidden_size,
            return_sequences=True,
            use_bias=layer.bias,
            dtype=policy,
            name=f"lstm_l{k}",
        )
        if layer.bidirectional:
            lstm = keras.layers.Bidirectional(
                lstm, dtype=policy, name=f"bidirectional_l{k}"
            )
        stack.append(lstm)
    model = keras.Sequential(stack, name=f"{layer.name}_keras")
    for k, keras_layer in enumerate(_recurrent_layers(model)):
        weights = [
            w
            for d in range(layer.num_directions)
            for w in keras_cell_weights(params, k, d)
        ]
        keras_layer.set_weights(weights)
    return model


def _recurrent_layers(model: keras.Model) -> list:
    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.LSTM, keras.layers.Bidirectional))
    ]


def _check_keras_lstm(lstm: Any, where: str) -> None:
    if not isinstance(lstm, keras.layers.LSTM):
        raise ValueError(
            f"Expected keras.layers.LSTM {where}. Received: {type(lstm).__name__}"
        )
    expected = {"activation": "tanh", "recurrent_activation": "sigmoid"}
    for attr, want in expected.items():
        got = keras.activations.serialize(getattr(lstm, attr))
        got = got if isinstance(got, str) else got.get("config", got)
        if got != want:
            raise ValueError(
                f"Expected keras.layers.LSTM {where} with {attr}={want!r}, as "
                f"torch.nn.LSTM computes. Received: {attr}={got!r}"
            )
    if not lstm.built:
        raise ValueError(
            f"Expected a built keras.layers.LSTM {where}. Received: unbuilt"
        )


def from_keras(
    source: Any, *, batch_first: bool = True, dtype: str | None = None
) -> tflstm.LSTM:
    """Reads a stock Keras LSTM stack back into a `tflstm.LSTM`.

    Args:
        source: A `keras.layers.LSTM`, a `keras.layers.Bidirectional` around
            one, or a model whose layers are those, optionally with
            `keras.layers.Dropout` of one rate between them (`to_keras`
            writes such a `keras.Sequential`).
        batch_first: The layer's `batch_first`. Defaults to `True`, as Keras
            is batch-major.
        dtype: Defaults to the Keras layers' compute dtype.

    Returns:
        A `tflstm.LSTM` whose `bias_ih` holds Keras's single bias and
        `bias_hh` zeros: same function, as Keras only knows their sum.
    """
    if isinstance(source, (keras.layers.LSTM, keras.layers.Bidirectional)):
        items = [source]
    elif isinstance(source, keras.Model):
        items = [
            lyr for lyr in source.layers if not isinstance(lyr, keras.layers.InputLayer)
        ]
    else:
        raise TypeError(
            "Expected a keras.layers.LSTM, a keras.layers.Bidirectional or a "
            f"keras.Model of them. Received: an object of type {type(source).__name__}"
        )
    recurrent, rates = [], set()
    for item in items:
        if isinstance(item, keras.layers.Dropout):
            rates.add(float(item.rate))
        elif isinstance(item, (keras.layers.LSTM, keras.layers.Bidirectional)):
            recurrent.append(item)
        else:
            raise ValueError(
                "Expected only keras.layers.LSTM, Bidirectional and Dropout layers. "
                f"Received: {type(item).__name__} {item.name!r}"
            )
    if not recurrent:
        raise ValueError("Expected at least one keras.layers.LSTM. Received: none")
    if len(rates) > 1:
        raise ValueError(
            "Expected one dropout rate between all layers, as torch.nn.LSTM has. "
            f"Received: rates {sorted(rates)}"
        )

    directions = []
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
                    f"Expected keras.layers.LSTM {where} with go_backwards=False. "
                    "Received: go_backwards=True"
                )
            pair = [item]
        for lstm in pair:
            _check_keras_lstm(lstm, where)
        directions.append(pair)

    first = directions[0][0]
    hidden = first.units
    bias = first.use_bias
    bidirectional = len(directions[0]) == 2
    params = {}
    for k, pair in enumerate(directions):
        if len(pair) != len(directions[0]) or any(
            lstm.units != hidden or lstm.use_bias != bias for lstm in pair
        ):
            raise ValueError(
                "Expected every layer with the same units, use_bias and "
                f"directions, as torch.nn.LSTM has. Received: layer {k} "
                f"({recurrent[k].name!r}) differs from layer 0"
            )
        for d, lstm in enumerate(pair):
            params.update(torch_cell_weights(lstm.get_weights(), k, d))
    layer = tflstm.LSTM(
        int(params["weight_ih_l0"].shape[1]),
        hidden,
        num_layers=len(directions),
        bias=bias,
        batch_first=batch_first,
        dropout=rates.pop() if rates else 0.0,
        bidirectional=bidirectional,
        dtype=dtype or first.compute_dtype,
    )
    load_weights(layer, params)
    return layer
