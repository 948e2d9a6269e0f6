"""Helpers shared by `tflstm` and `converters` that import neither TensorFlow
nor Keras (an import-linter contract in pyproject.toml): PyTorch's parameter
names (`params`), the optional-dependency check (`extras`) and the tolerances
against torch (`tolerance`).

They live outside the `tflstm` package because importing anything under
`tflstm` runs `tflstm/__init__.py`, which imports Keras (it must: importing
`tflstm` is what registers its layers for `keras.saving.load_model`). The
version lives here too, so that `tflstm-convert --version` imports nothing.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
