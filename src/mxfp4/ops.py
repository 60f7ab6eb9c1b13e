"""Public operations: pick the kernel on CUDA, the reference codec elsewhere."""

from __future__ import annotations

import torch

from . import codec
from .format import BLOCK_SIZE
from .tensor import MXTensor

BACKENDS = ("auto", "reference")


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def quantize(x: torch.Tensor, *, axis: int = -1, block_size: int = BLOCK_SIZE,
             scale_rule: str = "floor", rounding: str = "nearest", seed: int | None = None,
             backend: str = "auto") -> MXTensor:
    """Quantize `x` to MXFP4 in blocks of `block_size` along `axis`.

    scale_rule: "floor" (OCP MX v1.0), "ceil" (never clips), "even", or "mse".
    rounding: "nearest" (ties to even) or "stochastic" (unbiased inside +-6 * scale;
    pair it with scale_rule="ceil" so that no element is clipped). `seed` makes
    stochastic rounding reproducible on a given device.
    """
    _check_backend(backend)
    axis = codec.check_args(x, axis, block_size, scale_rule, rounding)
    codes, scales = codec.quantize_blocks(x, axis, block_size, scale_rule, rounding, seed)
    return MXTensor(codes, scales, x.shape, axis, block_size, scale_rule)


def dequantize(q: MXTensor, dtype: torch.dtype = torch.float32, *, backend: str = "auto") -> torch.Tensor:
    """The tensor an MXTensor stands for, in `dtype` (float32, bfloat16 or float16)."""
    _check_backend(backend)
    if not isinstance(q, MXTensor):
        raise TypeError(f"mxfp4.dequantize expects an MXTensor, got {type(q).__name__}")
    if dtype not in codec.FLOAT_DTYPES:
        raise TypeError(f"dequantize produces float32, bfloat16 or float16, not {dtype}")
    return codec.dequantize_blocks(q.codes, q.scales, q.shape, q.axis, q.block_size, dtype)
