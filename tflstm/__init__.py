"""tflstm: PyTorch's recurrent modules, number for number, as Keras 3 layers.

`LSTM`, `LSTMCell`, `GRU`, `GRUCell`, `RNN` and `RNNCell` compute what
`torch.nn`'s do.

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
from tflstm.gru import GRU, GRUCell  # noqa: E402
from tflstm.lstm import LSTM  # noqa: E402
from tflstm.lstm_cell import LSTMCell  # noqa: E402
from tflstm.rnn import RNN, RNNCell  # noqa: E402

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "__version__",
    "lstm_cell_param_shapes",
    "lstm_param_shapes",
]
