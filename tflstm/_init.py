"""The layers' weights: created at construction with PyTorch's names, shapes
and initialisation, or straight from a checkpoint's tensors.

`initial_values` is how the converters build a layer from a checkpoint
without first filling it with random numbers and then copying: each weight is
created from the checkpoint's tensor, so converting one LSTM out of a large
checkpoint holds the LSTM's weights about once (benchmarks/checkpoint_memory.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import keras

_INITIAL_VALUES: contextvars.ContextVar[Mapping[str, Callable] | None] = (
    contextvars.ContextVar("tflstm_initial_values", default=None)
)


def pytorch_uniform(hidden_size: int, seed: keras.random.SeedGenerator):
    """PyTorch's RNN initialiser: U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
    bound = 1.0 / math.sqrt(hidden_size)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


@contextlib.contextmanager
def initial_values(values: Mapping[str, Callable]) -> Iterator[None]:
    """Layers constructed inside take the weight named `name` from
    `values[name](shape, dtype)` (an array) instead of the random initialiser."""
    token = _INITIAL_VALUES.set(values)
    try:
        yield
    finally:
        _INITIAL_VALUES.reset(token)


def create_weights(
    layer: keras.layers.Layer,
    shapes: Mapping[str, tuple[int, ...]],
    hidden_size: int,
    seed: int | None,
) -> None:
    """Adds PyTorch's parameters as the layer's weights and attributes
    (`layer.weight_ih_l0`, ...), in torch's order."""
    init: Any = pytorch_uniform(hidden_size, keras.random.SeedGenerator(seed))
    given = _INITIAL_VALUES.get() or {}
    for name, shape in shapes.items():
        # autocast=False: under a mixed policy the state is computed in the
        # variables' dtype (float32), not in float16/bfloat16 at every step;
        # outputs are cast to the compute dtype.
        weight = layer.add_weight(
            shape, given.get(name, init), name=name, autocast=False
        )
        setattr(layer, name, weight)
