"""Torch modules holding MXFP4 weights. Imported lazily so that `import mxfp4` stays light."""

import importlib

_EXPORTS = {
    "MXLinear": ".linear",
    "MXEmbedding": ".embedding",
    "MoE": ".moe",
    "quantize_model": ".convert",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
