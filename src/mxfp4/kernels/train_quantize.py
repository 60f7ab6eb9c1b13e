"""Fused quantize-dequantize of a training GEMM operand: random-sign Hadamard + MXFP4, one pass.

Reference twin: `mxfp4.train.hadamard_sr.quantize_dequantize_reference` (which is the codec's
quantize_blocks + dequantize_blocks after an exact blockwise rotation). Nearest rounding gives
the reference's bits exactly whenever the rotated sums are exact in float32 (always without a
Hadamard transform); stochastic rounding draws Philox uniforms (tl.rand) from the seed and the
element's index (one Philox call per four elements), so it is reproducible per seed but not the
reference's stream.

A 2-D operand [R, K] with blocks along K (either memory axis: the strides are arguments, and a
stride of 1 is specialized by Triton, so the loads follow the contiguous axis). A program loads a
tile [ROWS, TK], multiplies it by the signs and by the ±1 Hadamard matrix (a tensor-core dot per
block of HB; built in registers from the parity of i & j), finds each block's E8M0 scale, rounds,
and writes the dequantized values in the output dtype: the input is read once, the output
written once, and nothing in between touches memory.

`quantize_dequantize_both` reads an operand once and writes it quantized along both axes (a
training step needs x along K for the forward GEMM and along the tokens for wgrad, dy along N
and along the tokens, W along K and along N): three reads saved a layer-step, and half the
launches. Each output is bit for bit what the one-axis kernel gives.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..codec import SCALE_RULES
from .quantize import mse_byte, pow2_f32, rne_index, seed_or_draw
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
def _qdq(x, rows, k0, K, seed, sign_seed, signs_ptr,
         RULE: tl.constexpr, STOCHASTIC: tl.constexpr, HAS_SIGNS: tl.constexpr,
         BS: tl.constexpr, HB: tl.constexpr, DOT: tl.constexpr,
         ROWS: tl.constexpr, TK: tl.constexpr):
    """Quantize-dequantize a float32 tile x [ROWS, TK] in blocks along its last axis.

    rows: the tile's row indices in the operand; k0: its first column; K: the operand's length
    along the blocks (the random streams and the signs are functions of (row, column) alone,
    so a tile gives the same values wherever it is computed)."""
    k = k0 + tl.arange(0, TK)
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
        u = _uniforms(seed, rows, k0, K, ROWS, TK).reshape(ROWS, TK // BS, BS)
        mag = rne_index(tl.minimum(lo + tl.where(u < (y - lo) * inv, step, 0.0), 6.0))
    else:
        mag = rne_index(y)
    code = mag | ((xbits >> 28) & 8)  # the float's sign bit -> code bit 3 (-0.0 stays -0.0)
    scale = e8m0_to_f32(tl.where(nonfinite, 255, byte))  # 255: NaN, the whole block
    return (e2m1_to_f32(code) * scale[:, :, None]).reshape(ROWS, TK)


@triton.jit
def _uniforms(seed, rows, k0, K, ROWS: tl.constexpr, TK: tl.constexpr):
    """[ROWS, TK] uniforms in [0, 1): one Philox call gives four (tl.rand4x), for the four
    consecutive elements of a row at (row, 4j .. 4j + 3) — a quarter of the rounds of a call
    per element, which made stochastic rounding cost 2.4x nearest rounding on the H100."""
    quad = rows[:, None] * ((K + 3) // 4) + (k0 // 4 + tl.arange(0, TK // 4))[None, :]
    u0, u1, u2, u3 = tl.rand4x(seed, quad)
    return tl.join(tl.join(u0, u1), tl.join(u2, u3)).reshape(ROWS, TK)


@triton.jit
def _train_quantize_kernel(x_ptr, out_ptr, signs_ptr, R, K, sx_r, sx_k, so_r, so_k, seed, sign_seed,
                           RULE: tl.constexpr, STOCHASTIC: tl.constexpr, HAS_SIGNS: tl.constexpr,
                           BS: tl.constexpr, HB: tl.constexpr, DOT: tl.constexpr,
                           ROWS: tl.constexpr, TK: tl.constexpr):
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    k0 = tl.program_id(1) * TK
    r2 = r[:, None].to(tl.int64)
    k2 = (k0 + tl.arange(0, TK))[None, :]
    inside = (r2 < R) & (k2 < K)
    x = tl.load(x_ptr + r2 * sx_r + k2 * sx_k, mask=inside, other=0.0).to(tl.float32)
    vals = _qdq(x, r, k0, K, seed, sign_seed, signs_ptr, RULE, STOCHASTIC, HAS_SIGNS, BS, HB, DOT,
                ROWS, TK)
    tl.store(out_ptr + r2 * so_r + k2 * so_k, vals.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _train_quantize_both_kernel(x_ptr, out1_ptr, out0_ptr, R, K, sx_r, sx_k, s1_r, s1_k, s0_r, s0_k,
                                seed1, sign_seed1, seed0, sign_seed0,
                                RULE1: tl.constexpr, STOCHASTIC1: tl.constexpr, SIGNS1: tl.constexpr,
                                BS1: tl.constexpr, HB1: tl.constexpr,
                                RULE0: tl.constexpr, STOCHASTIC0: tl.constexpr, SIGNS0: tl.constexpr,
                                BS0: tl.constexpr, HB0: tl.constexpr, DOT: tl.constexpr,
                                TR: tl.constexpr, TC: tl.constexpr):
    """One read of x [R, K], two outputs: blocks along axis 1 (out1) and along axis 0 (out0),
    each exactly what _train_quantize_kernel gives for that axis (the axis-0 pass is the same
    code on the transposed tile)."""
    r0 = tl.program_id(0) * TR
    c0 = tl.program_id(1) * TC
    r = r0 + tl.arange(0, TR)
    c = c0 + tl.arange(0, TC)
    r2 = r[:, None].to(tl.int64)
    c2 = c[None, :]
    inside = (r2 < R) & (c2 < K)
    x = tl.load(x_ptr + r2 * sx_r + c2 * sx_k, mask=inside, other=0.0).to(tl.float32)
    a = _qdq(x, r, c0, K, seed1, sign_seed1, x_ptr, RULE1, STOCHASTIC1, SIGNS1, BS1, HB1, DOT, TR, TC)
    tl.store(out1_ptr + r2 * s1_r + c2 * s1_k, a.to(out1_ptr.dtype.element_ty), mask=inside)
    b = _qdq(tl.trans(x), c, r0, R, seed0, sign_seed0, x_ptr, RULE0, STOCHASTIC0, SIGNS0, BS0, HB0,
             DOT, TC, TR)
    tl.store(out0_ptr + r2 * s0_r + c2 * s0_k, tl.trans(b).to(out0_ptr.dtype.element_ty),
             mask=inside)


def _dot_kind(dtype: torch.dtype) -> int:
    if INTERPRET:  # the interpreter cannot do bf16 arithmetic: float32 math, same exact products
        return DOT_IEEE
    return {torch.bfloat16: DOT_BF16, torch.float16: DOT_FP16}.get(dtype, DOT_IEEE)


def tile_shape(rows: int, k: int, block_size: int, hadamard: int, k_contiguous: bool) -> tuple[int, int]:
    """(ROWS, TK): about TILE_ELEMENTS per program. Along a contiguous K, wide tiles (up to 256);
    along a strided K (blocks down the columns), the narrowest tile so rows are long runs."""
    unit = max(block_size, hadamard)
    tk = max(unit, min(256, triton.next_power_of_2(k))) if k_contiguous else max(unit, 4)
    tk = max(tk, 4)  # the uniforms come in fours along K
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
    _check_hadamard(hadamard)
    out = torch.empty_like(x, dtype=dtype)
    xv, ov = (x, out) if axis == 1 else (x.t(), out.t())  # the kernel's K is the last axis
    rows, k = xv.shape
    if k % max(block_size, hadamard):
        raise ValueError(f"length {k} along axis {axis} is not a multiple of "
                         f"{max(block_size, hadamard)}")
    seed = seed_or_draw(seed)
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


def _check_hadamard(hadamard: int) -> None:
    if hadamard and (hadamard < 16 or hadamard > 128 or hadamard & (hadamard - 1)):
        raise ValueError(f"the kernel's Hadamard size must be a power of two from 16 to 128, got {hadamard}")


def both_tile(unit1: int, unit0: int, stochastic_both: bool) -> tuple[int, int, int]:
    """(TR, TC, warps) of the two-axis kernel, whole blocks along both axes. Measured on the
    H100 (docs/training.md): 64 x 64 with 8 warps where both outputs draw SR uniforms,
    64 x 128 with 16 warps otherwise."""
    if stochastic_both and unit0 <= 64 and unit1 <= 64:
        return 64, 64, 8
    return max(64, unit0), max(128, unit1), 16


def quantize_dequantize_both(x: torch.Tensor, along1: dict, along0: dict,
                             dtype: torch.dtype = torch.bfloat16,
                             tile: tuple[int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x quantize-dequantized in blocks along axis 1, the same along axis 0), from one read of x.

    along1 / along0: block_size, scale_rule, stochastic, seed, hadamard, sign_seed (None: no
    signs) for each output, as quantize_dequantize takes them. Both lengths must be multiples of
    their blocks (and Hadamard sizes); the caller (train.hadamard_sr) validates. tile: (TR, TC,
    warps) instead of both_tile's (benchmarks sweep it)."""
    if x.dim() != 2:
        raise ValueError(f"train_quantize expects a 2-D tensor, got shape {tuple(x.shape)}")
    rows, k = x.shape
    for spec, n, axis in ((along1, k, 1), (along0, rows, 0)):
        _check_hadamard(spec["hadamard"])
        if n % max(spec["block_size"], spec["hadamard"]):
            raise ValueError(f"length {n} along axis {axis} is not a multiple of "
                             f"{max(spec['block_size'], spec['hadamard'])}")
    out1 = torch.empty_like(x, dtype=dtype)
    out0 = torch.empty_like(x, dtype=dtype)
    if rows and k:
        tr, tc, warps = tile or both_tile(max(along1["block_size"], along1["hadamard"]),
                                          max(along0["block_size"], along0["hadamard"]),
                                          along1["stochastic"] and along0["stochastic"])
        seeds = [seed_or_draw(along1["seed"]), seed_or_draw(along0["seed"])]
        _train_quantize_both_kernel[(triton.cdiv(rows, tr), triton.cdiv(k, tc))](
            x, out1, out0, rows, k, x.stride(0), x.stride(1), out1.stride(0), out1.stride(1),
            out0.stride(0), out0.stride(1),
            seeds[0] & 0x7FFFFFFF, (along1["sign_seed"] or 0) & 0x7FFFFFFF,
            seeds[1] & 0x7FFFFFFF, (along0["sign_seed"] or 0) & 0x7FFFFFFF,
            RULE1=RULE_IDS[along1["scale_rule"]], STOCHASTIC1=bool(along1["stochastic"]),
            SIGNS1=2 if along1["hadamard"] and along1["sign_seed"] is not None else 0,
            BS1=along1["block_size"], HB1=along1["hadamard"],
            RULE0=RULE_IDS[along0["scale_rule"]], STOCHASTIC0=bool(along0["stochastic"]),
            SIGNS0=2 if along0["hadamard"] and along0["sign_seed"] is not None else 0,
            BS0=along0["block_size"], HB0=along0["hadamard"], DOT=_dot_kind(x.dtype),
            TR=tr, TC=tc, num_warps=warps)
    return out1, out0
