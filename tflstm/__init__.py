"""tflstm: PyTorch's `nn.LSTM` and `nn.LSTMCell`, number for number, as Keras 3 layers.

>>> import tflstm
>>> layer = tflstm.LSTM(input_size=8, hidden_size=16, num_layers=2, batch_first=True)
"""

from tflstm._params import lstm_cell_param_shapes, lstm_param_shapes
from tflstm.lstm import LSTM
from tflstm.lstm_cell import LSTMCell

__version__ = "0.1.0"

__all__ = [
    "LSTM",
    "LSTMCell",
    "__version__",
    "lstm_cell_param_shapes",
    "lstm_param_shapes",
]
