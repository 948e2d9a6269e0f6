"""Optional dependencies: when one is missing, the error names the pip command.

>>> require("json", extra="torch").__name__
'json'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["CPU_TORCH", "MissingExtraError", "require"]

# The distribution that provides each optional top-level module.
_DISTRIBUTIONS = {"torch": "torch", "ai_edge_litert": "ai-edge-litert"}

# pip resolves `torch` to a CUDA build on Linux (several GB); this is the CPU one.
CPU_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says how to add it."""


def require(module: str, *, extra: str, purpose: str = "This feature") -> ModuleType:
    """Imports `module`, or raises `MissingExtraError` naming `tflstm[extra]`.

    Args:
        module: The module to import, e.g. `"ai_edge_litert.interpreter"`.
        extra: The extra of `tflstm` that installs it, e.g. `"litert"`.
        purpose: What needs it, to start the message, e.g. `"run_tflite"`.

    Raises:
        MissingExtraError: (an `ImportError`, its `name` the missing top-level
            module) if the module's distribution is not installed: one error,
            without the `ModuleNotFoundError` chained under it, since the
            message says all. An `ImportError` raised inside an installed
            module (one of its own dependencies missing) propagates unchanged.
    """
    top = module.split(".")[0]
    try:
        importlib.import_module(top)  # the distribution, then the module asked for
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name not in (top, module):
            raise
        distribution = _DISTRIBUTIONS.get(top, top)
        message = (
            f"{purpose} needs {distribution}, which is not installed. "
            f'Install it with: pip install "tflstm[{extra}]"'
        )
        if top == "torch":
            message += f" (or, for a CPU-only torch on Linux: {CPU_TORCH})"
        raise MissingExtraError(message, name=top) from None
