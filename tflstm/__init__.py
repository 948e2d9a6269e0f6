"""tflstm: PyTorch's `nn.LSTM` and `nn.LSTMCell`, number for number, as Keras 3 layers.

>>> import tflstm
>>> layer = tflstm.LSTM(input_size=8, hidden_size=16, num_layers=2, batch_first=True)

Importing `tflstm` registers its layers with Keras (package "tflstm"), which
`keras.saving.load_model` needs to load a `.keras` file that holds them.
"""

from _tflstm import __version__
from tflstm._quiet import import_tensorflow

# Before Keras imports TensorFlow: its start-up lines would reach stderr.
import_tensorflow()

from _tflstm.params import lstm_cell_param_shapes, lstm_param_shapes  # noqa: E402
from tflstm.lstm import LSTM  # noqa: E402
from tflstm.lstm_cell import LSTMCell  # noqa: E402

__all__ = [
    "LSTM",
    "LSTMCell",
    "__version__",
    "lstm_cell_param_shapes",
    "lstm_param_shapes",
]
