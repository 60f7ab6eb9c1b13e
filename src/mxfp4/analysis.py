"""Error statistics of an MXFP4 quantization."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch

from .codec import to_blocks
from .format import E2M1_MAX, E8M0_BIAS, E8M0_NAN, e8m0_to_float32
from .tensor import MXTensor


@dataclass(frozen=True)
class ErrorStats:
    """How far x̂ = dequantize(quantize(x)) is from x.

    qsnr_db is 10·log10(Σx² / Σ(x − x̂)²) (inf when exact); mean_error is the bias mean(x̂ − x);
    saturated_fraction counts elements with |x| > 6·scale, i.e. clipped to ±6·scale;
    scale_exponents maps each block exponent e (scale 2^e) to its block count, NaN blocks under None.
    """

    numel: int
    mse: float
    qsnr_db: float
    max_abs_error: float
    mean_error: float
    saturated_fraction: float
    scale_exponents: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def error_stats(x: torch.Tensor, q: MXTensor | None = None, **quantize_args) -> ErrorStats:
    """Statistics of `q` as an approximation of `x` (quantizes x with `quantize_args` if q is None)."""
    from .ops import quantize

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"error_stats expects a torch.Tensor, got {type(x).__name__}")
    if q is None:
        q = quantize(x, **quantize_args)
    elif quantize_args:
        raise ValueError("pass either an MXTensor or quantize arguments, not both")
    if not isinstance(q, MXTensor):
        raise TypeError(f"error_stats expects an MXTensor, got {type(q).__name__}")
    if tuple(x.shape) != tuple(q.shape):
        raise ValueError(f"shapes differ: x {tuple(x.shape)} vs MXTensor {tuple(q.shape)}")
    ref = x.detach().to(torch.float64)
    err = q.dequantize(torch.float32).to(ref.device, torch.float64) - ref
    signal, noise = float((ref * ref).sum()), float((err * err).sum())
    n = ref.numel()
    qsnr = math.inf if noise == 0 else (-math.inf if signal == 0 else 10 * math.log10(signal / noise))
    return ErrorStats(
        numel=n,
        mse=noise / n if n else 0.0,
        qsnr_db=qsnr,
        max_abs_error=float(err.abs().max()) if n else 0.0,
        mean_error=float(err.mean()) if n else 0.0,
        saturated_fraction=_saturated(x, q) / n if n else 0.0,
        scale_exponents=_exponent_histogram(q.scales),
    )


def _saturated(x: torch.Tensor, q: MXTensor) -> int:
    blocks = to_blocks(x.detach(), q.axis, q.block_size)
    limit = E2M1_MAX * e8m0_to_float32(q.scales.to(blocks.device).movedim(q.axis, -1))
    return int((blocks.abs() > limit[..., None]).sum())


def _exponent_histogram(scales: torch.Tensor) -> dict:
    counts = Counter(scales.flatten().tolist())
    return {(None if b == E8M0_NAN else b - E8M0_BIAS): n for b, n in sorted(counts.items())}
