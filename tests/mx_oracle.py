"""An independent MXFP4 oracle for the tests: float64 NumPy plus ml_dtypes' E2M1 cast.

It shares no code with mxfp4: scale exponents come from np.frexp, element rounding from
ml_dtypes.float4_e2m1fn (round to nearest even, saturating, signed zero).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

F4 = ml_dtypes.float4_e2m1fn


def scale_exponents(amax: np.ndarray, rule: str) -> np.ndarray:
    """Block exponent e (scale 2^e) per block max |x| for floor / ceil / even, clamped to ±127."""
    a = np.where(np.isfinite(amax) & (amax > 0), amax, 1.0)
    mant, ex = np.frexp(a)  # a = mant * 2^ex, mant in [0.5, 1)
    if rule == "even":  # round amax to one mantissa bit, ties to even, then the floor rule
        mant, ex = np.frexp(np.ldexp(np.round(mant * 4) / 4, ex))
    floor_e = ex.astype(np.int64) - 1 - 2  # floor(log2(amax)) - emax(E2M1)
    if rule in ("floor", "even"):
        e = floor_e
    elif rule == "ceil":
        e = np.where(a <= 6 * np.ldexp(1.0, floor_e), floor_e, floor_e + 1)
    else:
        raise ValueError(rule)
    return np.clip(np.where(amax == 0, -127, e), -127, 127)


def encode(blocks: np.ndarray, e: np.ndarray) -> np.ndarray:
    """E2M1 codes of blocks [..., bs] divided by 2^e [...] (exact in float64)."""
    with np.errstate(invalid="ignore", over="ignore"):  # saturation and NaN blocks are expected
        return (blocks / np.ldexp(1.0, e)[..., None]).astype(F4).view(np.uint8) & 0xF


def decode(codes: np.ndarray, e: np.ndarray) -> np.ndarray:
    return codes.astype(np.uint8).view(F4).astype(np.float64) * np.ldexp(1.0, e)[..., None]


def quantize_blocks(blocks: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes [..., bs] (one per element) and scale bytes [...] for float64 blocks [..., bs]."""
    finite = np.all(np.isfinite(blocks), axis=-1)
    amax = np.where(finite, np.max(np.abs(np.where(np.isfinite(blocks), blocks, 0)), axis=-1), np.inf)
    e = scale_exponents(amax, "floor" if rule == "mse" else rule)
    codes = encode(blocks, e)
    if rule == "mse":
        e_up = np.minimum(e + 1, 127)
        codes_up = encode(blocks, e_up)
        err = np.sum((blocks - decode(codes, e)) ** 2, axis=-1)
        err_up = np.sum((blocks - decode(codes_up, e_up)) ** 2, axis=-1)
        up = err_up < err
        e, codes = np.where(up, e_up, e), np.where(up[..., None], codes_up, codes)
    codes = np.where(finite[..., None], codes, 0).astype(np.uint8)
    return codes, np.where(finite, e + 127, 0xFF).astype(np.uint8)


def quantize(x, block_size: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Oracle along the last axis: packed codes [..., Kp/2] and scale bytes [..., Kp/bs]."""
    x = np.asarray(x, dtype=np.float64)
    k = x.shape[-1]
    kp = -(-k // block_size) * block_size
    padded = np.zeros(x.shape[:-1] + (kp,), np.float64)
    padded[..., :k] = x
    codes, scales = quantize_blocks(padded.reshape(x.shape[:-1] + (kp // block_size, block_size)), rule)
    codes = codes.reshape(x.shape[:-1] + (kp,))
    return codes[..., 0::2] | (codes[..., 1::2] << 4), scales
