"""Prefill W4A16 (bf16 x, M in the thousands): decode W once to bf16, then cuBLAS.

Reference twin: `mxfp4.ops.linear(..., backend="reference")` (x @ dequantize(W).T in fp32).

At large M the product is compute-bound. Decoding W [N, K] reads 4.25 bits and writes 16 bits
per weight (about 50 us for 4096 x 14336 on an H100) while the GEMM takes 2MNK / peak (about
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

# From `mxfp4 bench kernels` on an H100 (docs/kernels.md, "Prefill"): below this many rows of x
# the fused kernel wins, because the decode pass is no longer small next to the GEMM.
PREFILL_MIN_M = 1024


def use_prefill(m: int, dtype: torch.dtype) -> bool:
    """Whether mxfp4.linear takes the decode-then-cuBLAS path for an [m, K] input of `dtype`."""
    return m >= PREFILL_MIN_M and dtype == torch.bfloat16


@triton.jit
def _hopper_to_bf16_kernel(codes_ptr, scales_ptr, out_ptr, n, k, row_bytes, scale_stride,
                           BR: tl.constexpr):
    """One 64-element group (32 bytes) of BR rows of a HopperWeight -> bf16 W [N, K].

    Byte j of a group holds element j (low nibble, scale block 2g) and element 32 + j
    (high nibble, rotated, scale block 2g + 1); codes and scales are padded, so loads need
    no mask, only the stores to the unpadded [N, K] output do.
    """
    rows = tl.program_id(0) * BR + tl.arange(0, BR)[:, None]
    g = tl.program_id(1)
    j = tl.arange(0, 32)[None, :]
    packed = tl.load(codes_ptr + rows * row_bytes + g * 32 + j)
    s_lo = e8m0_to_bf16(tl.load(scales_ptr + (2 * g) * scale_stride + rows))
    s_hi = e8m0_to_bf16(tl.load(scales_ptr + (2 * g + 1) * scale_stride + rows))
    lo, hi = unpack_hopper_bf16(packed, tl.broadcast_to(s_lo, (BR, 32)),
                                tl.broadcast_to(s_hi, (BR, 32)))
    col = g * 64 + j
    base = out_ptr + rows * k + col
    tl.store(base, lo, mask=(rows < n) & (col < k))
    tl.store(base + 32, hi, mask=(rows < n) & (col + 32 < k))


def weight_bf16(w) -> torch.Tensor:
    """The bf16 [N, K] matrix of an MXTensor or HopperWeight (exact), by one Triton kernel."""
    n, k = w.shape
    if not isinstance(w, HopperWeight):
        return dequantize(w.codes, w.scales, w.shape, 1, w.block_size, torch.bfloat16)
    out = torch.empty((n, k), dtype=torch.bfloat16, device=w.codes.device)
    br = 64  # HopperWeight pads N to a multiple of 128
    grid = (triton.cdiv(n, br), w.codes.shape[1] * 2 // GROUP)
    _hopper_to_bf16_kernel[grid](w.codes, w.scales, out, n, k, w.codes.shape[1],
                                 w.scales.shape[1], BR=br, num_warps=4)
    return out


def linear(x2: torch.Tensor, w, bias: torch.Tensor | None) -> torch.Tensor:
    """x2 [M, K] bf16 times W [N, K] (+ bias, cast to bf16 for cuBLAS's epilogue) -> [M, N]."""
    b = None if bias is None else bias.to(torch.bfloat16)
    return F.linear(x2, weight_bf16(w), b)
