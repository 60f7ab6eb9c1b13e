"""Prefill W4A16 (bf16 x, M in the thousands): decode W once to bf16, then cuBLAS.

Reference twin: `mxfp4.ops.linear(..., backend="reference")` (x @ dequantize(W).T in fp32).

At large M the product is compute-bound. Decoding W [N, K] reads 4.25 bits and writes 16 bits
per weight (56 us for 4096 x 14336 on an H100, 0.88 of its byte floor) while the GEMM takes 2MNK / peak (about
590 us at M = 4096 there), and cuBLAS runs its GEMM near the tensor cores' peak, which the fused
kernel (decode inside the MMA loop, which Triton 3.6 makes synchronous) does not reach. The
decode is exact (E2M1 x 2^e fits bf16) and cuBLAS accumulates in fp32, so the result is the
same product as the fused kernel's. It costs a temporary bf16 copy of W during the call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ..layouts import GROUP, HopperWeight
from .quantize import dequantize
from .unpack import e8m0_to_bf16, unpack_hopper_bf16

# From benchmarks/prefill_device.py on an H100 (docs/benchmarks/kernels-prefill.md): from 512
# rows of x on this path wins on all four benchmark shapes (e.g. 4096->14336: 142 vs 170 us);
# at 256 the fused kernel still wins on 4096->14336 (85 vs 109 us), the decode pass being a
# large part of the time.
PREFILL_MIN_M = 512


def use_prefill(m: int, dtype: torch.dtype) -> bool:
    """Whether mxfp4.linear takes the decode-then-cuBLAS path for an [m, K] input of `dtype`."""
    return m >= PREFILL_MIN_M and dtype == torch.bfloat16


@triton.jit
def _hopper_to_bf16_kernel(codes_ptr, scales_ptr, out_ptr, n, k, groups, row_bytes, scale_stride,
                           BR: tl.constexpr, BG: tl.constexpr, ROW_MAJOR: tl.constexpr):
    """BR rows x BG groups of 64 elements (32 bytes each) of a HopperWeight -> bf16 W [N, K].

    Byte j of group g holds element j (low nibble, scale block 2g) and element 32 + j (high
    nibble, rotated, scale block 2g + 1). Rows are padded, so only the group axis is masked on
    load; each row's BG * 64 outputs leave as one contiguous run.
    """
    if ROW_MAJOR:  # a 1-D grid: neighbouring programs write neighbouring runs of W
        pr = tl.program_id(0) // tl.cdiv(groups, BG)
        pg = tl.program_id(0) % tl.cdiv(groups, BG)
    else:
        pr = tl.program_id(0)
        pg = tl.program_id(1)
    r = pr * BR + tl.arange(0, BR)[:, None, None]
    g = pg * BG + tl.arange(0, BG)[None, :, None]
    j = tl.arange(0, 32)[None, None, :]
    packed = tl.load(codes_ptr + r * row_bytes + g * 32 + j, mask=g < groups, other=0)
    s_lo = e8m0_to_bf16(tl.load(scales_ptr + (2 * g) * scale_stride + r, mask=g < groups, other=127))
    s_hi = e8m0_to_bf16(tl.load(scales_ptr + (2 * g + 1) * scale_stride + r, mask=g < groups,
                                other=127))
    lo, hi = unpack_hopper_bf16(packed, tl.broadcast_to(s_lo, (BR, BG, 32)),
                                tl.broadcast_to(s_hi, (BR, BG, 32)))
    vals = tl.reshape(tl.permute(tl.join(lo, hi), (0, 1, 3, 2)), (BR, BG * 64))
    rows = pr * BR + tl.arange(0, BR)[:, None]
    cols = pg * BG * 64 + tl.arange(0, BG * 64)[None, :]
    tl.store(out_ptr + rows * k + cols, vals, mask=(rows < n) & (cols < k))


# rows, 64-element groups, warps per program, row-major walk (1-D grid). H100 (benchmarks/
# prefill_decode_sweep.py), 4096 x 14336: 53.8 us against 55.9 for the 2-D grid's best, whose
# neighbouring programs write 16 rows (128 KB) apart; every tile gained 1.5-3.5 us.
HOPPER_TILE = (16, 8, 8, True)


def weight_bf16(w, tile: tuple = HOPPER_TILE) -> torch.Tensor:
    """The bf16 [N, K] matrix of an MXTensor or HopperWeight (exact), by one Triton kernel."""
    n, k = w.shape
    if not isinstance(w, HopperWeight):
        return dequantize(w.codes, w.scales, w.shape, 1, w.block_size, torch.bfloat16)
    out = torch.empty((n, k), dtype=torch.bfloat16, device=w.codes.device)
    groups = w.codes.shape[1] * 2 // GROUP
    br, bg, warps, row_major = tile  # N is padded to 128 rows: row tiles <= 128 need no mask
    grid = (triton.cdiv(n, br), triton.cdiv(groups, bg))
    grid = (grid[0] * grid[1],) if row_major else grid
    _hopper_to_bf16_kernel[grid](w.codes, w.scales, out, n, k, groups, w.codes.shape[1],
                                 w.scales.shape[1], BR=br, BG=bg, ROW_MAJOR=row_major,
                                 num_warps=warps)
    return out


def linear(x2: torch.Tensor, w, bias: torch.Tensor | None) -> torch.Tensor:
    """x2 [M, K] bf16 times W [N, K] (+ bias, cast to bf16 for cuBLAS's epilogue) -> [M, N]."""
    b = None if bias is None else bias.to(torch.bfloat16)
    return F.linear(x2, weight_bf16(w), b)
