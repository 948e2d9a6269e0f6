"""converters: move LSTM weights between PyTorch, tflstm and stock Keras."""

__all__: list[str] = []
