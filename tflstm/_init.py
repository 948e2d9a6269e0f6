"""The layers' weights: created at construction with PyTorch's names, shapes
and initialisation, or from given values (`with_weights`).

`with_weights` is how the converters build a layer from a checkpoint without
first filling it with random numbers and then copying: each weight is created
from the checkpoint's tensor, read when the weight is created, so converting
one LSTM out of a large checkpoint holds the LSTM's weights about once
(benchmarks/checkpoint_memory.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import keras
import numpy as np

_GIVEN = "_tflstm_given_weights"  # an instance attribute, for __init__ only

LayerT = TypeVar("LayerT", bound=keras.layers.Layer)


def pytorch_uniform(hidden_size: int, seed: keras.random.SeedGenerator):
    """PyTorch's RNN initialiser: U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
    bound = 1.0 / math.sqrt(hidden_size)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


def with_weights(
    cls: type[LayerT], weights: Mapping[str, Any], config: Mapping[str, Any]
) -> LayerT:
    """`cls(**config)` whose weights are created from `weights`: by PyTorch
    name, an array or a function `(shape, dtype) -> array` called when the
    weight is created (so that a checkpoint's tensors are read one at a
    time); weights not named keep PyTorch's initialisation.

    Raises:
        ValueError: for a name that is not one of the layer's weights.
    """
    # Keras's Operation.__new__ records the constructor's arguments.
    layer: LayerT = cast(Any, cls).__new__(cls, **config)
    # Read by `create_weights` during __init__, then dropped: no module-level
    # state, and no reference to the values once the variables hold them.
    object.__setattr__(layer, _GIVEN, dict(weights))
    layer.__init__(**config)
    return layer


class FromWeights:
    """Gives a layer class `from_weights`: construction with given weights."""

    @classmethod
    def from_weights(
        cls: type[LayerT], weights: Mapping[str, Any], **config: Any
    ) -> LayerT:
        """The layer `cls(**config)` whose weights are created from `weights`,
        by PyTorch name: arrays of torch's shapes, or functions
        `(shape, dtype) -> array`, called when the weight is created (how
        `converters.from_torch` reads a checkpoint one tensor at a time). The
        weights not named keep PyTorch's initialisation.

        >>> import numpy as np, tflstm
        >>> weights = {"weight_ih_l0": np.ones((8, 3)), "weight_hh_l0": np.ones((8, 2))}
        >>> layer = tflstm.LSTM.from_weights(weights, input_size=3, hidden_size=2)
        >>> float(layer.weight_ih_l0.numpy().min())  # the others: PyTorch's init
        1.0
        """
        return with_weights(cls, weights, config)


def create_weights(
    layer: keras.layers.Layer,
    shapes: Mapping[str, tuple[int, ...]],
    hidden_size: int,
    seed: int | None,
) -> None:
    """Adds PyTorch's parameters as the layer's weights and attributes
    (`layer.weight_ih_l0`, ...), in torch's order."""
    init: Any = pytorch_uniform(hidden_size, keras.random.SeedGenerator(seed))
    given: dict[str, Any] = vars(layer).pop(_GIVEN, {})
    unknown = sorted(set(given) - set(shapes))
    if unknown:
        raise ValueError(
            f"Expected weights named as the layer's: {', '.join(shapes)}. "
            f"Received: {', '.join(unknown)}"
        )
    for name, shape in shapes.items():
        # autocast=False: under a mixed policy the state is computed in the
        # variables' dtype (float32), not in float16/bfloat16 at every step;
        # outputs are cast to the compute dtype.
        weight = layer.add_weight(
            shape, _initializer(given.get(name, init)), name=name, autocast=False
        )
        setattr(layer, name, weight)


def _initializer(value: Any) -> Callable | keras.initializers.Initializer:
    if callable(value):
        return value
    return lambda shape, dtype=None: np.asarray(value, dtype=dtype)
