"""Argument and shape checks shared by the layers and the converters.

One helper per kind of check, so that every message has one wording (Keras's
"Received: ..." style: what was expected, then what was received) and one test.
Every check runs before any computation.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras

Shape = Sequence[int | None]


def check_backend() -> None:
    """Raises if Keras does not run on TensorFlow (the layers use `tf` ops)."""
    name = keras.backend.backend()
    if name != "tensorflow":
        raise RuntimeError(
            "tflstm requires the TensorFlow backend of Keras. Set the "
            "environment variable KERAS_BACKEND=tensorflow before importing "
            f"keras. Received: keras.backend.backend()={name!r}"
        )


def check_bool(name: str, value: object) -> bool:
    """Returns `value` if it is a `bool`; raises `TypeError` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(
            f"Received an invalid value for argument `{name}`, expected a bool, "
            f"got {value!r} of type {type(value).__name__}."
        )
    return value


def check_choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """Returns `value` if it is one of `options` (compared with `is` for
    booleans, so that 1 is not taken for True)."""
    for option in options:
        if value is option if isinstance(option, bool) else value == option:
            if not isinstance(value, bool) or isinstance(option, bool):
                return value
    expected = ", ".join(repr(o) for o in options)
    raise ValueError(
        f"Received an invalid value for argument `{name}`, expected one of "
        f"{expected}, got {value!r}."
    )


def check_nonlinearity(value: Any, options: Sequence[str]) -> str:
    """An RNN's `nonlinearity`, with torch's message."""
    if isinstance(value, str) and value in options:
        return value
    choices = " or ".join(repr(o) for o in options)
    raise ValueError(
        f"Unknown nonlinearity {value!r}. Select from {choices}. "
        f"Received: nonlinearity={value!r}"
    )


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Returns `value` if it is an integer >= `minimum`.

    Raises `TypeError` for a non-integer (including `bool` and integral floats,
    as `torch.nn.LSTM` does) and `ValueError` for an integer out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Received an invalid value for argument `{name}`, expected an "
            f"integer, got {value!r} of type {type(value).__name__}."
        )
    if value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            f"{expected}, got {value}."
        )
    return int(value)


def check_proj_size(proj_size: int, hidden_size: int) -> None:
    """`0 <= proj_size < hidden_size`, as in `torch.nn.LSTM`."""
    if proj_size >= hidden_size:
        raise ValueError(
            "Received an invalid value for argument `proj_size`, expected an "
            f"integer smaller than hidden_size={hidden_size} (or 0 to disable "
            f"the projection), got {proj_size}."
        )


def check_dropout(dropout: object) -> float:
    """A probability in [0, 1], as `torch.nn.LSTM` requires."""
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, numbers.Real)
        or not 0 <= float(dropout) <= 1
    ):
        raise ValueError(
            "Received an invalid value for argument `dropout`, expected a "
            "number in [0, 1] (the probability of an element being zeroed), "
            f"got {dropout!r}."
        )
    return float(dropout)


def check_floating(name: str, dtype: Any) -> None:
    """Inputs must be floating point (Keras casts them to the layer's dtype)."""
    dtype = keras.backend.standardize_dtype(dtype)
    if "float" not in dtype:
        raise ValueError(
            f"Expected `{name}` of a floating-point dtype. "
            f"Received: {name}.dtype={dtype}"
        )


def _fmt(shape: Shape) -> str:
    dims = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def check_rank(name: str, shape: Shape, allowed: dict[int, str]) -> None:
    """`allowed` maps each accepted rank to what it means, e.g. {3: "batched"}."""
    if len(shape) not in allowed:
        ranks = " or ".join(f"{r} ({what})" for r, what in allowed.items())
        raise ValueError(
            f"Expected `{name}` of rank {ranks}. "
            f"Received: {name}.shape={_fmt(shape)} of rank {len(shape)}"
        )


def check_shape(name: str, shape: Shape, expected: Shape, legend: str) -> None:
    """Every known dimension of `shape` equals `expected` (None matches any).

    `legend` names the dimensions, e.g. "(D*num_layers, N, H_out)".
    """
    ok = len(shape) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(shape, expected, strict=True)
    )
    if not ok:
        raise ValueError(
            f"Expected `{name}` of shape {legend} = {_fmt(expected)}. "
            f"Received: {name}.shape={_fmt(shape)}"
        )


def check_features(name: str, shape: Shape, size: int, arg: str) -> None:
    """The last dimension of `shape` is `size` (the constructor argument `arg`)."""
    if shape[-1] is not None and shape[-1] != size:
        raise ValueError(
            f"Expected the last dimension of `{name}` to be {arg}={size}. "
            f"Received: {name}.shape={_fmt(shape)}"
        )


def check_sequence_length(name: str, shape: Shape, axis: int) -> None:
    """A sequence must hold at least one step (torch refuses empty ones too)."""
    if shape[axis] == 0:
        raise ValueError(
            f"Expected `{name}` with a sequence length of at least 1 (axis "
            f"{axis}). Received: {name}.shape={_fmt(shape)}"
        )


def check_integer_dtype(name: str, dtype: Any) -> None:
    """Lengths are integers (torch converts them to int64; we do not guess)."""
    dtype = keras.backend.standardize_dtype(dtype)
    if "int" not in dtype:
        raise TypeError(
            f"Expected `{name}` of an integer dtype. Received: {name}.dtype={dtype}"
        )


LENGTHS_MESSAGE = (
    "Expected every sequence length from `{}` in [1, L] (L = the input's "
    "sequence length)."
)
MASK_PADDING_MESSAGE = (
    "Expected a right-padded `mask`: True for the first `length` steps of each "
    "sequence, False after them (PyTorch's packed sequences)."
)


def check_length_values(
    source: str, lengths: Any, steps: int, unpadded: Sequence[int] = ()
) -> None:
    """Concrete lengths (from `sequence_lengths` or a mask) lie in [1, L];
    `unpadded` lists the batch elements whose mask is not right-padded."""
    if len(unpadded):
        raise ValueError(
            f"{MASK_PADDING_MESSAGE} Received: a mask with a False step before a "
            f"True step in batch element(s) {list(unpadded)[:5]}"
        )
    bad = {i: n for i, n in enumerate(lengths.tolist()) if not 1 <= n <= steps}
    if bad:
        shown = dict(list(bad.items())[:5])
        raise ValueError(
            f"{LENGTHS_MESSAGE.format(source)} Received: L={steps} and the "
            f"lengths {shown} (batch element: length)"
        )


def check_states(name: str, value: object, states: tuple[str, ...]) -> None:
    """`hx` as torch takes it: a tuple `(h_0, c_0)` for an LSTM, one tensor
    `h_0` for a cell with one state."""
    if len(states) == 1:
        if isinstance(value, (tuple, list)) or not hasattr(value, "shape"):
            what = (
                f"a {type(value).__name__} of length {len(value)}"
                if isinstance(value, (tuple, list))
                else f"an object of type {type(value).__name__}"
            )
            raise ValueError(
                f"Expected `{name}` to be a tensor {states[0]}_0, or None. "
                f"Received: {what}"
            )
        return
    # (two states at most: the LSTM's)
    if not isinstance(value, (tuple, list)) or len(value) != len(states):
        what = (
            f"a {type(value).__name__} of length {len(value)}"
            if isinstance(value, (tuple, list))
            else f"an object of type {type(value).__name__}"
        )
        names = ", ".join(f"{s}_0" for s in states)
        raise ValueError(
            f"Expected `{name}` to be a tuple ({names}) of two tensors, or None. "
            f"Received: {what}"
        )
