"""Triton MXFP4 quantize / dequantize along any axis.

Reference twins: `mxfp4.codec.quantize_blocks` and `mxfp4.codec.dequantize_blocks`. The
deterministic modes (every scale rule with rounding="nearest") give the same code and scale
bytes bit for bit; stochastic rounding draws counter-based uniforms (tl.rand, Philox) from the
seed and the element's index, so it is reproducible per seed but not the reference's stream.

A tensor is seen as [outer, K, inner] with blocks along K; a program handles a tile of
ROWS (outer*inner pairs) x BLOCKS x BS elements. With inner == 1 (blocks along the last axis)
the addresses are plain row-major and the loads and stores vectorize.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from ..codec import SCALE_RULES
from .unpack import e2m1_to_f32, e8m0_to_bf16, e8m0_to_f32, unpack_scaled_bf16

FLT_MAX = tl.constexpr(3.4028234663852886e38)
MAGIC_RNE = tl.constexpr(12582912.0)  # 1.5 * 2^23: adding it rounds [0, 2^22) to integers, ties to even
RULE_IDS = {rule: i for i, rule in enumerate(SCALE_RULES)}  # floor, ceil, even, mse


@triton.jit
def pow2_f32(e):
    """2^e as float32 for integer e in [-127, 127] (2^-127 is a subnormal), like format.pow2_float32."""
    b = e + 127
    return tl.where(b > 0, b << 23, 1 << 22).to(tl.float32, bitcast=True)


@triton.jit
def rne_index(y):
    """E2M1 magnitude index 0..7 of y >= 0: nearest, ties to even, saturating at 6.

    Same as codec.round_nearest (bucketize on the midpoints). Below 1 the grid step is 0.5,
    so the index is rint(2y); from 1 up, rounding the float32 mantissa to one bit (ties to
    even) leaves (exponent, mantissa bit) = the index, counted from 1.0 -> 2.
    """
    small = ((y * 2.0 + MAGIC_RNE).to(tl.int32, bitcast=True) - 0x4B400000)
    bits = y.to(tl.int32, bitcast=True)
    big = ((bits + 0x1FFFFF + ((bits >> 22) & 1)) >> 22) - 252
    return tl.where(y < 1.0, small, tl.minimum(big, 7))


@triton.jit
def mse_byte(ax, byte):
    """The mse rule: byte (floor) or byte + 1, whichever rounds the block [.., BS] of |x| with
    the smaller squared error; exact and order-free, as codec._mse_choice (its twin) explains."""
    up = tl.minimum(byte + 1, 254)
    y = ax * pow2_f32(127 - byte)[:, :, None]
    q_f = e2m1_to_f32(rne_index(y)).to(tl.float64)
    q_u = e2m1_to_f32(rne_index(ax * pow2_f32(127 - up)[:, :, None])).to(tl.float64)
    gain = tl.sum((2.0 * q_u - q_f) * (2.0 * y.to(tl.float64) - q_f - 2.0 * q_u), axis=2)
    return tl.where((gain > 0) & (up > byte), up, byte)


@triton.jit
def _quantize_kernel(x_ptr, codes_ptr, scales_ptr, R, K, NB, INNER, seed, N_BT, TILES,
                     RULE: tl.constexpr, STOCHASTIC: tl.constexpr, BS: tl.constexpr,
                     ROWS: tl.constexpr, BLOCKS: tl.constexpr, INNER_ONE: tl.constexpr,
                     EVICT: tl.constexpr, WALK_1D: tl.constexpr):
    if WALK_1D:  # a 1-D grid (one program per tile, or a few per SM) walks them row-major
        for t in range(tl.program_id(0), TILES, tl.num_programs(0)):
            _quantize_tile(t // N_BT, t % N_BT, x_ptr, codes_ptr, scales_ptr, R, K, NB, INNER,
                           seed, RULE, STOCHASTIC, BS, ROWS, BLOCKS, INNER_ONE, EVICT)
    else:
        _quantize_tile(tl.program_id(0), tl.program_id(1), x_ptr, codes_ptr, scales_ptr, R, K,
                       NB, INNER, seed, RULE, STOCHASTIC, BS, ROWS, BLOCKS, INNER_ONE, EVICT)


@triton.jit
def _quantize_tile(pr, pb, x_ptr, codes_ptr, scales_ptr, R, K, NB, INNER, seed,
                   RULE: tl.constexpr, STOCHASTIC: tl.constexpr, BS: tl.constexpr,
                   ROWS: tl.constexpr, BLOCKS: tl.constexpr, INNER_ONE: tl.constexpr,
                   EVICT: tl.constexpr):
    r = pr * ROWS + tl.arange(0, ROWS)
    b = pb * BLOCKS + tl.arange(0, BLOCKS)
    r3 = r[:, None, None].to(tl.int64)
    k3 = b[None, :, None] * BS + tl.arange(0, BS)[None, None, :]
    if INNER_ONE:
        x_off = r3 * K + k3
    else:
        x_off = ((r3 // INNER) * K + k3) * INNER + r3 % INNER
    if EVICT:  # the input is read once: keep it from pushing the outputs out of L2
        x = tl.load(x_ptr + x_off, mask=(r3 < R) & (k3 < K), other=0.0,
                    eviction_policy="evict_first").to(tl.float32)
    else:
        x = tl.load(x_ptr + x_off, mask=(r3 < R) & (k3 < K), other=0.0).to(tl.float32)

    # amax from the bits of |x|: as integers NaN > Inf > every finite value, so one integer
    # max gives both the block's largest magnitude and whether the block holds NaN or Inf
    xb = x.to(tl.int32, bitcast=True)
    ab = xb & 0x7FFFFFFF
    ax = ab.to(tl.float32, bitcast=True)
    bits = tl.max(ab, axis=2)
    nonfinite = bits >= 0x7F800000
    byte = (bits >> 23) - 2  # floor: floor(log2(amax)) - emax(E2M1)
    mantissa = bits & 0x7FFFFF
    if RULE == 1:  # ceil: amax > 1.5 * 2^E needs the next exponent
        byte += (mantissa > 0x400000).to(tl.int32)
    if RULE == 2:  # even: round amax to one mantissa bit first
        byte += (mantissa >= 0x600000).to(tl.int32)
    byte = tl.minimum(tl.maximum(byte, 0), 254)
    if RULE == 3:  # mse: floor or one up, whichever has the smaller squared error (ties: floor)
        byte = mse_byte(ax, byte)  # NaN blocks: overridden below

    y = ax * pow2_f32(127 - byte)[:, :, None]
    if STOCHASTIC:
        step = tl.where(y < 2.0, 0.5, tl.where(y < 4.0, 1.0, 2.0))
        inv = tl.where(y < 2.0, 2.0, tl.where(y < 4.0, 1.0, 0.5))  # exact: steps are powers of 2
        lo = tl.floor(y * inv) * step
        u = tl.rand(seed, (r3 * (NB * BS) + k3).to(tl.int32))
        q = tl.minimum(lo + tl.where(u < (y - lo) * inv, step, 0.0), 6.0)
        mag = rne_index(q)
    else:
        mag = rne_index(y)
    keep = tl.where(nonfinite, 0, 15)  # NaN/Inf blocks: all codes 0
    code = (mag | ((xb >> 28) & 8)) & keep[:, :, None]

    even, odd = tl.split(code.reshape(ROWS, BLOCKS, BS // 2, 2))
    packed = (even | (odd << 4)).to(tl.uint8)
    j = tl.arange(0, BS // 2)[None, None, :]
    bmask = (r[:, None] < R) & (b[None, :] < NB)
    b3 = b[None, :, None]
    if INNER_ONE:
        c_off = r3 * (NB * BS // 2) + b3 * (BS // 2) + j
        s_off = r[:, None].to(tl.int64) * NB + b[None, :]
    else:
        c_off = ((r3 // INNER) * (NB * BS // 2) + b3 * (BS // 2) + j) * INNER + r3 % INNER
        r2 = r[:, None].to(tl.int64)
        s_off = ((r2 // INNER) * NB + b[None, :]) * INNER + r2 % INNER
    tl.store(codes_ptr + c_off, packed, mask=bmask[:, :, None])
    tl.store(scales_ptr + s_off, tl.where(nonfinite, 255, byte).to(tl.uint8), mask=bmask)


@triton.jit
def _dequantize_kernel(codes_ptr, scales_ptr, out_ptr, R, K, NB, INNER, N_BT, TILES,
                       BS: tl.constexpr, ROWS: tl.constexpr, BLOCKS: tl.constexpr,
                       INNER_ONE: tl.constexpr, EVICT: tl.constexpr, WALK_1D: tl.constexpr):
    if WALK_1D:  # row-major walk (see _options)
        for t in range(tl.program_id(0), TILES, tl.num_programs(0)):
            _dequantize_tile(t // N_BT, t % N_BT, codes_ptr, scales_ptr, out_ptr, R, K, NB,
                             INNER, BS, ROWS, BLOCKS, INNER_ONE, EVICT)
    else:
        _dequantize_tile(tl.program_id(0), tl.program_id(1), codes_ptr, scales_ptr, out_ptr,
                         R, K, NB, INNER, BS, ROWS, BLOCKS, INNER_ONE, EVICT)


@triton.jit
def _dequantize_tile(pr, pb, codes_ptr, scales_ptr, out_ptr, R, K, NB, INNER,
                     BS: tl.constexpr, ROWS: tl.constexpr, BLOCKS: tl.constexpr,
                     INNER_ONE: tl.constexpr, EVICT: tl.constexpr):
    r = pr * ROWS + tl.arange(0, ROWS)
    b = pb * BLOCKS + tl.arange(0, BLOCKS)
    r3 = r[:, None, None].to(tl.int64)
    b3 = b[None, :, None]
    j = tl.arange(0, BS // 2)[None, None, :]
    r2 = r[:, None].to(tl.int64)
    bmask = (r[:, None] < R) & (b[None, :] < NB)
    if INNER_ONE:
        # 4-byte code loads: each thread then holds 8 outputs = one 16-byte store, so the
        # result needs no layout shuffle through shared memory before it is written
        if BS >= 8:
            j = tl.max_contiguous(j, [1, 1, 4])
        c_off = r3 * (NB * BS // 2) + b3 * (BS // 2) + j
        s_off = r2 * NB + b[None, :]
    else:
        c_off = ((r3 // INNER) * (NB * BS // 2) + b3 * (BS // 2) + j) * INNER + r3 % INNER
        s_off = ((r2 // INNER) * NB + b[None, :]) * INNER + r2 % INNER
    packed = tl.load(codes_ptr + c_off, mask=bmask[:, :, None], other=0)
    s_bytes = tl.load(scales_ptr + s_off, mask=bmask, other=127)
    if out_ptr.dtype.element_ty == tl.bfloat16 and BS >= 8:
        # bf16 out: the packed PTX decode (4 bytes per snippet, so blocks of >= 4 bytes), code
        # times scale in bf16 (exact, like float32 then RNE: every E2M1 value times 2^e is a
        # bf16, or overflows to inf either way)
        s = tl.broadcast_to(e8m0_to_bf16(s_bytes)[:, :, None], (ROWS, BLOCKS, BS // 2))
        lo, hi = unpack_scaled_bf16(packed, s, s)
        vals = tl.join(lo, hi).reshape(ROWS, BLOCKS, BS)
    else:
        lo = e2m1_to_f32(packed)
        hi = e2m1_to_f32(packed.to(tl.int32) >> 4)
        vals = tl.join(lo, hi).reshape(ROWS, BLOCKS, BS) * e8m0_to_f32(s_bytes)[:, :, None]

    k3 = b3 * BS + tl.arange(0, BS)[None, None, :]
    if INNER_ONE:
        o_off = r3 * K + k3
    else:
        o_off = ((r3 // INNER) * K + k3) * INNER + r3 % INNER
    if EVICT:  # streamed output: mark its lines first to go from L2
        tl.store(out_ptr + o_off, vals.to(out_ptr.dtype.element_ty), mask=(r3 < R) & (k3 < K),
                 eviction_policy="evict_first")
    else:
        tl.store(out_ptr + o_off, vals.to(out_ptr.dtype.element_ty), mask=(r3 < R) & (k3 < K))


def _view(shape, axis: int) -> tuple[int, int, int]:
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _tile(rows: int, n_blocks: int, bs: int, elements: int, cols: int = 256) -> tuple[int, int]:
    """(ROWS, BLOCKS): about `elements` per program, `cols` wide, no larger than the tensor needs."""
    blocks = min(triton.next_power_of_2(n_blocks), max(1, cols // bs))
    rows_tile = min(triton.next_power_of_2(max(rows, 1)), max(1, elements // (blocks * bs)))
    return rows_tile, blocks


def _options(tile: tuple) -> tuple[int, int, bool, int, int]:
    """(elements, warps, evict-first hint, walk, tile width in elements along the block axis).

    walk 0: a 2-D grid, one program per tile, row tiles fastest (neighbouring programs are a
    tile of rows apart); -1: a 1-D grid, one program per tile in row-major order (neighbouring
    programs touch neighbouring bytes); n > 0: n persistent programs per SM, row-major."""
    elements, warps, evict, walk, cols = tuple(tile) + (False, 0, 256)[len(tile) - 2:]
    return elements, warps, bool(evict), walk, cols


def _grid(rows: int, nb: int, rt: int, bt: int, walk: int, device) -> tuple:
    """Launch grid, tiles per row of tiles, and tile count."""
    n_rt, n_bt = triton.cdiv(rows, rt), triton.cdiv(nb, bt)
    if walk < 0:
        return (n_rt * n_bt,), n_bt, n_rt * n_bt
    if not walk:
        return (n_rt, n_bt), n_bt, n_rt * n_bt
    return (min(n_rt * n_bt, _sm_count(device) * walk),), n_bt, n_rt * n_bt


@functools.lru_cache(maxsize=None)
def _sm_count(device) -> int:
    if device.type != "cuda":
        return 4  # the CPU interpreter: still several tiles per program
    return torch.cuda.get_device_properties(device).multi_processor_count


# (elements per program, warps[, evict-first hint[, walk[, width]]]) (see _options): tuned on
# the H100 (mxfp4 bench kernels --sweep, scripts/tune_quantize.py, benchmarks/order_probe.py at 3fcbdde;
# docs/kernels.md "Tuning"). Quantize: 4 rows x 1024 columns measured 65.4 us against 68.0 us
# for 16 x 256, and the row-major walk 71.9 against 69.8. Dequantize: the row-major walk
# measured 60.3 us against 64.6 for the 2-D grid (neighbouring programs write one stream).
QUANTIZE_TILE = (4096, 4, False, 0, 1024)
DEQUANTIZE_TILE = (2048, 4, False, -1)


def seed_or_draw(seed: int | None) -> int:
    """seed, or a fresh one from torch's host RNG (no device sync) when None."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else seed


def quantize(x: torch.Tensor, axis: int, block_size: int, scale_rule: str, rounding: str,
             seed: int | None, tile: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed codes and E8M0 scales (uint8), shaped like codec.quantize_blocks' outputs."""
    x = x.contiguous()
    axis %= x.dim()
    outer, k, inner = _view(x.shape, axis)
    nb = -(-k // block_size)
    codes = torch.empty((outer, nb * block_size // 2, inner), dtype=torch.uint8, device=x.device)
    scales = torch.empty((outer, nb, inner), dtype=torch.uint8, device=x.device)
    rows = outer * inner
    seed = seed_or_draw(seed)
    if rows and nb:
        elements, warps, evict, walk, cols = _options(tile or QUANTIZE_TILE)
        if scale_rule == "mse":  # float64 error sums: smaller tiles keep registers in check
            elements = min(elements, 2048)
        if inner != 1 and tile is None:  # strided blocks: only last-axis tiles were measured
            cols = 256
        rt, bt = _tile(rows, nb, block_size, elements, cols)
        grid, n_bt, tiles = _grid(rows, nb, rt, bt, walk, x.device)
        _quantize_kernel[grid](x, codes, scales, rows, k, nb, inner, seed & 0x7FFFFFFF, n_bt,
                               tiles,
                               RULE=RULE_IDS[scale_rule], STOCHASTIC=rounding == "stochastic",
                               BS=block_size, ROWS=rt, BLOCKS=bt, INNER_ONE=inner == 1,
                               EVICT=evict, WALK_1D=walk != 0, num_warps=warps)
    cshape, sshape = list(x.shape), list(x.shape)
    cshape[axis], sshape[axis] = nb * block_size // 2, nb
    return codes.view(cshape), scales.view(sshape)


def dequantize(codes: torch.Tensor, scales: torch.Tensor, shape, axis: int, block_size: int,
               dtype: torch.dtype, tile: tuple[int, int] | None = None) -> torch.Tensor:
    """The logical tensor `shape` in `dtype`, like codec.dequantize_blocks."""
    codes, scales = codes.contiguous(), scales.contiguous()
    axis %= len(shape)
    outer, k, inner = _view(shape, axis)
    nb = scales.shape[axis]
    out = torch.empty(tuple(shape), dtype=dtype, device=codes.device)
    rows = outer * inner
    if rows and nb:
        elements, warps, evict, walk, cols = _options(tile or DEQUANTIZE_TILE)
        rt, bt = _tile(rows, nb, block_size, elements, cols)
        grid, n_bt, tiles = _grid(rows, nb, rt, bt, walk, codes.device)
        _dequantize_kernel[grid](codes, scales, out, rows, k, nb, inner, n_bt, tiles,
                                 BS=block_size,
                                 ROWS=rt, BLOCKS=bt, INNER_ONE=inner == 1,
                                 EVICT=evict, WALK_1D=walk != 0, num_warps=warps)
    return out

