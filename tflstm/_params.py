"""PyTorch's parameter names and shapes (a re-export of `_tflstm.params`).

The functions live in `_tflstm`, which imports neither Keras nor TensorFlow, so
that the checkpoint tools reach them without importing `tflstm`.
"""

from _tflstm.params import lstm_cell_param_shapes, lstm_param_name, lstm_param_shapes

__all__ = ["lstm_cell_param_shapes", "lstm_param_name", "lstm_param_shapes"]
