"""converters: move recurrent weights (LSTM, GRU, RNN) between PyTorch, tflstm and
stock Keras.

>>> import torch, converters
>>> module = torch.nn.LSTM(4, 8, num_layers=2, bidirectional=True, proj_size=3)
>>> layer = converters.from_torch(module)          # a tflstm.LSTM
>>> state_dict = converters.to_torch(layer)        # numpy arrays, torch's keys
>>> _ = module.load_state_dict(
...     {k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)

The names below are imported on first use: reading checkpoints and finding
their recurrent modules (`load_checkpoint`, `read_shapes`, `find_recurrent`,
...) imports neither TensorFlow nor Keras.
"""

import importlib
from typing import Any

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "TensorInfo": "checkpoint",
    "UnsafePickleWarning": "checkpoint",
    "checkpoint_format": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_safetensors": "checkpoint",
    "read_shapes": "checkpoint",
    "save_state_dict": "checkpoint",
    "RecurrentSpec": "discover",
    "find_recurrent": "discover",
    "infer_spec": "discover",
    "from_keras": "keras_io",
    "keras_model": "models",
    "torch_layout": "models",
    "to_keras": "keras_io",
    "from_torch": "torch_io",
    "load_weights": "torch_io",
    "to_torch": "torch_io",
    "to_torch_module": "torch_io",
    "torch_config": "torch_io",
    "torch_module_from": "torch_io",
    "Report": "verify",
    "TensorError": "verify",
    "compare": "verify",
    "format_report": "verify",
    "random_input": "verify",
    "random_lengths": "verify",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'converters' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"converters.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
