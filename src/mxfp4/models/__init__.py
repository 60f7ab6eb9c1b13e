"""Whole networks built on mxfp4.nn: GptOss (gpt-oss-20b / 120b with MXFP4 experts).
Imported lazily so that `import mxfp4` stays light."""

import importlib

_EXPORTS = {
    "GptOss": ".gpt_oss",
    "GptOssConfig": ".gpt_oss",
    "KVCache": ".kv_cache",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
