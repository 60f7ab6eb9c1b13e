"""mxfp4: the OCP Microscaling 4-bit float format (E2M1 elements, E8M0 block scales)."""

from importlib.metadata import PackageNotFoundError, version as _version

from .analysis import ErrorStats, error_stats
from .format import BLOCK_SIZE, E2M1_VALUES
from .ops import dequantize, linear, matmul, quantize
from .tensor import MXTensor

try:
    __version__ = _version("mxfp4")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.1.0"

__all__ = ["BLOCK_SIZE", "E2M1_VALUES", "ErrorStats", "MXTensor", "dequantize",
           "error_stats", "linear", "matmul", "quantize", "__version__",
           "quantize_model", "save_quantized", "load_quantized"]

# Model-level API, imported on first use so that `import mxfp4` stays light.
_LAZY = {"quantize_model": "mxfp4.nn.convert", "save_quantized": "mxfp4.io.checkpoint",
         "load_quantized": "mxfp4.io.checkpoint"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mxfp4' has no attribute {name!r}")
