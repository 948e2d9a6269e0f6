"""What a command writes, from the output's name: the format, and its folder."""

from __future__ import annotations

import os
from pathlib import Path

from converters.cli._common import CliError

# What each format of `convert` writes, and the name that says so.
MODEL_FORMATS = {
    "keras": "a .keras file",
    "savedmodel": "a SavedModel folder (a name without a suffix)",
    "tflite": "a .tflite file",
}


MODEL_SUFFIXES = {".keras": "keras", ".tflite": "tflite"}


# What `to-torch` writes (`converters.save_state_dict`), by suffix.
STATE_DICT_SUFFIXES = {
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
    ".ckpt": "torch",
    ".safetensors": "safetensors",
    ".npz": "npz",
}


def model_format(output: str, given: str | None) -> str:
    """The format `convert` writes: the one the output's name says, which a
    --format must not contradict."""
    path = Path(output)
    if path.is_dir() or output.endswith(("/", os.sep)) or not path.suffix:
        implied: str | None = "savedmodel"
    else:
        implied = MODEL_SUFFIXES.get(path.suffix.lower())
    if implied is None:
        raise CliError(
            "expected the output to end in .keras (a Keras model) or .tflite "
            "(LiteRT), or to be a folder without a suffix (a SavedModel). "
            f"Received: {output!r}"
        )
    if given is not None and given != implied:
        suffix = {"keras": ".keras", "tflite": ".tflite", "savedmodel": ""}[given]
        raise CliError(
            f"--format {given} writes {MODEL_FORMATS[given]}, but the output "
            f"{output!r} names {MODEL_FORMATS[implied]}: name it "
            f"{str(path.with_suffix(suffix))!r}, or leave --format out (the "
            "format follows the name)"
        )
    return implied


def state_dict_format(output: str, given: str | None) -> str:
    """The format `to-torch` writes, from the output's suffix."""
    path = Path(output)
    implied = STATE_DICT_SUFFIXES.get(path.suffix.lower())
    if implied is None:
        raise CliError(
            "expected the output to end in .pt, .pth, .bin, .ckpt (torch), "
            f".safetensors or .npz. Received: {output!r}"
        )
    if given is not None and given != implied:
        names = [s for s, f in STATE_DICT_SUFFIXES.items() if f == given]
        raise CliError(
            f"--format {given} writes a {' or '.join(names)} file, but the "
            f"output {output!r} names a {implied} file: name it "
            f"{str(path.with_suffix(names[0]))!r}, or leave --format out (the "
            "format follows the name)"
        )
    return implied


def make_parent(output: str) -> None:
    """Creates the output's missing parent folder (before any work)."""
    parent = Path(output).parent
    if parent.exists() and not parent.is_dir():
        raise CliError(
            f"expected the output's parent {str(parent)!r} to be a folder. "
            "Received: a file"
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create the folder {str(parent)!r}: {e}") from e
