"""The cell definitions (one module each) and their registry.

A cell definition is the math of one recurrent cell (`base.Cell`): how its
biases split between the input and the recurrent side, its states, its step
for inference and for training, and its step's backward. Everything else
(the time loop, directions, masking, BPTT, kernels, exports, converters) is
written once and takes a cell as data. The pure-Python facts of each cell
(gate count, state names) are `_tflstm.cells.CELLS`.
"""

from tflstm.cells.base import Cell, Recurrent, State, StepGrad
from tflstm.cells.gru import GRU
from tflstm.cells.lstm import LSTM
from tflstm.cells.rnn import RNN_RELU, RNN_TANH, rnn_cell

# Each kind's definition (an RNN's: its default nonlinearity, tanh).
CELLS: dict[str, Cell] = {cell.spec.kind: cell for cell in (LSTM, GRU, RNN_TANH)}

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "RNN_RELU",
    "RNN_TANH",
    "Cell",
    "Recurrent",
    "State",
    "StepGrad",
    "rnn_cell",
]
