"""Fused quantize-dequantize of a training GEMM operand: random-sign Hadamard + MXFP4, one pass.

Reference twin: `mxfp4.train.hadamard_sr.quantize_dequantize_reference` (which is the codec's
quantize_blocks + dequantize_blocks after an exact blockwise rotation). Nearest rounding gives
the reference's bits exactly whenever the rotated sums are exact in float32 (always without a
Hadamard transform); stochastic rounding draws Philox uniforms (tl.rand) from the seed and the
element's index, so it is reproducible per seed but not the reference's stream.

A 2-D operand [R, K] with blocks along K (either memory axis: the strides are arguments, and a
stride of 1 is specialized by Triton, so the loads follow the contiguous axis). A program loads a
tile [ROWS, TK], multiplies it by the signs and by the ±1 Hadamard matrix (a tensor-core dot per
block of HB; built in registers from the parity of i & j), finds each block's E8M0 scale, rounds,
and writes the dequantized values in the output dtype: the input is read once, the output
written once, and nothing in between touches memory.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..codec import SCALE_RULES
from .quantize import mse_byte, pow2_f32, rne_index
from .unpack import INTERPRET, e2m1_to_f32, e8m0_to_f32

RULE_IDS = {rule: i for i, rule in enumerate(SCALE_RULES)}  # floor, ceil, even, mse
DOT_IEEE, DOT_BF16, DOT_FP16 = 0, 1, 2
TILE_ELEMENTS = 4096


@triton.jit
def _hadamard_pm1(HB: tl.constexpr):
    """[HB, HB] float32 Sylvester matrix: H[i, j] = (-1)^popcount(i & j), HB <= 256 (8 bits)."""
    i = tl.arange(0, HB)
    p = i[:, None] & i[None, :]
    p ^= p >> 4
    p ^= p >> 2
    p ^= p >> 1
    return 1.0 - 2.0 * (p & 1).to(tl.float32)


@triton.jit
def _hash_signs(k, sign_seed):
    """±1 for each index k: the top bit of MurmurHash3's finalizer of (k + 1) * golden ^ seed,
    the same bits as its twin, train.hadamard_sr.random_signs (uint32 arithmetic wraps)."""
    h = (k + 1).to(tl.uint32) * 0x9E3779B1
    h ^= sign_seed.to(tl.uint32)
    h ^= h >> 16
    h *= 0x85EBCA6B
    h ^= h >> 13
    h *= 0xC2B2AE35
    h ^= h >> 16
    return 1.0 - 2.0 * (h >> 31).to(tl.float32)


@triton.jit
def _train_quantize_kernel(x_ptr, out_ptr, signs_ptr, R, K, sx_r, sx_k, so_r, so_k, seed, sign_seed,
                           RULE: tl.constexpr, STOCHASTIC: tl.constexpr, HAS_SIGNS: tl.constexpr,
                           BS: tl.constexpr, HB: tl.constexpr, DOT: tl.constexpr,
                           ROWS: tl.constexpr, TK: tl.constexpr):
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    k = tl.program_id(1) * TK + tl.arange(0, TK)
    r2 = r[:, None].to(tl.int64)
    k2 = k[None, :]
    inside = (r2 < R) & (k2 < K)
    x = tl.load(x_ptr + r2 * sx_r + k2 * sx_k, mask=inside, other=0.0).to(tl.float32)

    if HB > 0:  # K is a multiple of HB: a Hadamard block is wholly inside or wholly masked
        if HAS_SIGNS == 1:  # a sign vector in memory
            x = x * tl.load(signs_ptr + k, mask=k < K, other=1.0)[None, :]
        if HAS_SIGNS == 2:  # drawn here from sign_seed
            x = x * _hash_signs(k, sign_seed)[None, :]
        xb = x.reshape(ROWS * (TK // HB), HB)
        h = _hadamard_pm1(HB)
        if DOT == 1:  # bf16 input: x times ±1 is exact in bf16, sums in float32
            xb = tl.dot(xb.to(tl.bfloat16), h.to(tl.bfloat16))
        elif DOT == 2:
            xb = tl.dot(xb.to(tl.float16), h.to(tl.float16))
        else:
            xb = tl.dot(xb, h, input_precision="ieee")
        x = xb.reshape(ROWS, TK)

    # the codec's scale rules on the bits of |x| (see kernels/quantize.py: NaN > Inf > finite)
    x = x.reshape(ROWS, TK // BS, BS)
    xbits = x.to(tl.int32, bitcast=True)
    ab = xbits & 0x7FFFFFFF
    ax = ab.to(tl.float32, bitcast=True)
    bits = tl.max(ab, axis=2)
    nonfinite = bits >= 0x7F800000
    byte = (bits >> 23) - 2
    mantissa = bits & 0x7FFFFF
    if RULE == 1:
        byte += (mantissa > 0x400000).to(tl.int32)
    if RULE == 2:
        byte += (mantissa >= 0x600000).to(tl.int32)
    byte = tl.minimum(tl.maximum(byte, 0), 254)
    if RULE == 3:
        byte = mse_byte(ax, byte)

    y = ax * pow2_f32(127 - byte)[:, :, None]
    if STOCHASTIC:
        step = tl.where(y < 2.0, 0.5, tl.where(y < 4.0, 1.0, 2.0))
        inv = tl.where(y < 2.0, 2.0, tl.where(y < 4.0, 1.0, 0.5))  # exact: powers of two
        lo = tl.floor(y * inv) * step
        u = tl.rand(seed, (r[:, None] * K + k2).reshape(ROWS, TK // BS, BS))
        mag = rne_index(tl.minimum(lo + tl.where(u < (y - lo) * inv, step, 0.0), 6.0))
    else:
        mag = rne_index(y)
    code = mag | ((xbits >> 28) & 8)  # the float's sign bit -> code bit 3 (-0.0 stays -0.0)
    scale = e8m0_to_f32(tl.where(nonfinite, 255, byte))  # 255: NaN, the whole block
    vals = (e2m1_to_f32(code) * scale[:, :, None]).reshape(ROWS, TK)
    tl.store(out_ptr + r2 * so_r + k2 * so_k, vals.to(out_ptr.dtype.element_ty), mask=inside)


def _dot_kind(dtype: torch.dtype) -> int:
    if INTERPRET:  # the interpreter cannot do bf16 arithmetic: float32 math, same exact products
        return DOT_IEEE
    return {torch.bfloat16: DOT_BF16, torch.float16: DOT_FP16}.get(dtype, DOT_IEEE)


def tile_shape(rows: int, k: int, block_size: int, hadamard: int, k_contiguous: bool) -> tuple[int, int]:
    """(ROWS, TK): about TILE_ELEMENTS per program. Along a contiguous K, wide tiles (up to 256);
    along a strided K (blocks down the columns), the narrowest tile so rows are long runs."""
    unit = max(block_size, hadamard)
    tk = max(unit, min(256, triton.next_power_of_2(k))) if k_contiguous else unit
    rows_tile = max(1, TILE_ELEMENTS // tk)
    rows_tile = min(rows_tile, triton.next_power_of_2(max(rows, 1)))
    if hadamard:  # tl.dot needs at least 16 rows: ROWS * TK / HB >= 16
        rows_tile = max(rows_tile, 16 * hadamard // tk)
    return rows_tile, tk


def quantize_dequantize(x: torch.Tensor, axis: int, *, block_size: int, scale_rule: str,
                        stochastic: bool, seed: int | None, hadamard: int = 0,
                        signs: torch.Tensor | None = None, sign_seed: int | None = None,
                        dtype: torch.dtype = torch.bfloat16,
                        tile: tuple[int, int] | None = None) -> torch.Tensor:
    """The operand x (2-D) rotated along `axis` (if hadamard) and MXFP4 quantize-dequantized
    there, in `dtype` and x's memory layout. The caller (train.hadamard_sr) validates."""
    if x.dim() != 2:
        raise ValueError(f"train_quantize expects a 2-D tensor, got shape {tuple(x.shape)}")
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1, got {axis}")
    if hadamard and (hadamard < 16 or hadamard > 128 or hadamard & (hadamard - 1)):
        raise ValueError(f"the kernel's Hadamard size must be a power of two from 16 to 128, got {hadamard}")
    out = torch.empty_like(x, dtype=dtype)
    xv, ov = (x, out) if axis == 1 else (x.t(), out.t())  # the kernel's K is the last axis
    rows, k = xv.shape
    if k % max(block_size, hadamard):
        raise ValueError(f"length {k} along axis {axis} is not a multiple of "
                         f"{max(block_size, hadamard)}")
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # host RNG: no device sync
    sign_mode = 0 if not hadamard else 1 if signs is not None else 2 if sign_seed is not None else 0
    if sign_mode == 1:
        signs = signs.to(device=x.device, dtype=torch.float32).contiguous()
    if rows and k:
        rt, tk = tile or tile_shape(rows, k, block_size, hadamard, xv.stride(1) == 1)
        grid = (triton.cdiv(rows, rt), triton.cdiv(k, tk))
        _train_quantize_kernel[grid](
            xv, ov, signs if sign_mode == 1 else xv, rows, k, xv.stride(0), xv.stride(1),
            ov.stride(0), ov.stride(1), seed & 0x7FFFFFFF, (sign_seed or 0) & 0x7FFFFFFF,
            RULE=RULE_IDS[scale_rule], STOCHASTIC=bool(stochastic), HAS_SIGNS=sign_mode,
            BS=block_size, HB=hadamard, DOT=_dot_kind(x.dtype), ROWS=rt, TK=tk,
            num_warps=8 if hadamard >= 128 else 4)  # the [HB, HB] matrix lives in registers
    return out
