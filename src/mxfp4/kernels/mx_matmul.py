"""MX x MX matmul: C = A @ B.T in fp32 for MXFP4 A [M, K] and B [N, K], both blocked along K.

Reference twin: `mxfp4.ops.matmul(..., backend="reference")`. Per the OCP MX dot product each
block pair contributes scale_a * scale_b * sum(a_i * b_i); here both tiles are decoded in
registers to bf16 (every E2M1 value times a power-of-two scale is exact in bf16), so each
product is exact in fp32 and the tensor cores accumulate in fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .unpack import dot_bf16, grouped_tile, load_mx_tile


@triton.jit
def _mx_matmul_kernel(a_codes, a_scales, b_codes, b_scales, out_ptr, M, N, KP,
                      BS: tl.constexpr, SB: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      MASK_K: tl.constexpr, GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BM)
    tiles_n = tl.cdiv(N, BN)
    pid_m, pid_n = grouped_tile(pid, tiles_m, tiles_n, GROUP_M)

    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rm_c = tl.minimum(rm, M - 1).to(tl.int64)[:, None]  # clamped rows: loads stay in bounds
    rn_c = tl.minimum(rn, N - 1).to(tl.int64)[:, None]
    a_rows, sa_rows = a_codes + rm_c * (KP // 2), a_scales + rm_c * (KP // BS)
    b_rows, sb_rows = b_codes + rn_c * (KP // 2), b_scales + rn_c * (KP // BS)
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(0, KP, BK):
        a = load_mx_tile(a_rows, sa_rows, k0, KP, BM, BK, BS, SB, MASK_K)
        b = load_mx_tile(b_rows, sb_rows, k0, KP, BN, BK, BS, SB, MASK_K)
        acc = dot_bf16(a, tl.trans(b), acc)
    out = out_ptr + rm[:, None].to(tl.int64) * N + rn[None, :]
    tl.store(out, acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


def matmul(a, b) -> torch.Tensor:
    """fp32 [M, N] from MXTensors a [M, K], b [N, K] (checked by mxfp4.ops.matmul)."""
    m, n = a.shape[0], b.shape[0]
    kp = a.codes.shape[1] * 2
    out = torch.empty((m, n), dtype=torch.float32, device=a.device)
    if m == 0 or n == 0:
        return out
    if kp == 0:
        return out.zero_()
    bk = 128
    while bk > 16 and kp % bk:
        bk //= 2
    mask_k = kp % bk != 0
    bm = 128 if m > 64 else 64
    bn = 128 if n > 64 else 64
    grid = (triton.cdiv(m, bm) * triton.cdiv(n, bn),)
    _mx_matmul_kernel[grid](a.codes, a.scales, b.codes, b.scales, out, m, n, kp,
                            BS=a.block_size, SB=min(a.block_size, bk), BM=bm, BN=bn, BK=bk, MASK_K=mask_k, GROUP_M=8,
                            num_warps=8 if bm * bn >= 128 * 128 else 4, num_stages=3)
    return out
