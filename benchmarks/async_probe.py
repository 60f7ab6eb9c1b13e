"""On a GPU: can decode and wgmma overlap in Triton 3.6? The tiled kernel's K step against a
one-dot step.

The tiled kernel (kernels/unpack.hopper_dot) multiplies each K step's low and high nibbles in
two dots; Triton then waits for each register-A wgmma (pendings = 0). With one dot per 128-wide
step, Triton 3.6 splits it into k16 wgmmas and lets 7 stay in flight while the next chunk is
decoded (and ptxas keeps them asynchronous). One dot needs the decoded tile in one K order:
byte j of a 64-group holds elements j and 32 + j, so joined (low, high) pairs give the order
j, 32 + j, j + 1, 33 + j, ...; x is read in that order from a permuted copy made once.
Run: PYTHONPATH=src python3 benchmarks/async_probe.py
"""

import sys

import torch
import triton
import triton.language as tl

from mxfp4.kernels.unpack import (dot_bf16, e8m0_times_2p126_bf16, grouped_tile,
                                  unpack_hopper_fused_bf16)


@triton.jit
def _one_dot_kernel(x_ptr, w_ptr, s_ptr, out_ptr, M, N, K, KP, NP, stride_xm, stride_om,
                    BN: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, GROUP_N: tl.constexpr):
    """out [M, N] = x @ W.T; x_ptr holds x permuted in each 64-group (x_permuted), W a
    HopperWeight with every scale byte <= 128, K a multiple of 64."""
    pid = tl.program_id(0)
    pid_n, pid_m = grouped_tile(pid, tl.cdiv(N, BN), tl.cdiv(M, BM), GROUP_N)
    rn = pid_n * BN + tl.arange(0, BN)
    rm = pid_m * BM + tl.arange(0, BM)
    w_rows = w_ptr + rn.to(tl.int64)[:, None] * (KP // 2)
    s_cols = s_ptr + rn[None, :]
    x_cols = x_ptr + rm.to(tl.int64)[None, :] * stride_xm
    m_ok = rm < M
    acc = tl.zeros([BN, BM], dtype=tl.float32)
    k_main = K // BK * BK
    for k0 in range(0, k_main, BK):
        acc = _step(acc, w_rows, s_cols, x_cols, m_ok, k0, NP, BN, BK)
    if BK > 64:
        for k0 in range(k_main, K, 64):
            acc = _step(acc, w_rows, s_cols, x_cols, m_ok, k0, NP, BN, 64)
    out = out_ptr + rm[None, :].to(tl.int64) * stride_om + rn[:, None]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=(rn[:, None] < N) & m_ok[None, :])


@triton.jit
def _step(acc, w_rows, s_cols, x_cols, m_ok, k0, NP, BN: tl.constexpr, BK: tl.constexpr):
    jb = tl.arange(0, BK // 2)
    kb = tl.arange(0, BK // 32)
    packed = tl.load(w_rows + (k0 // 2 + jb)[None, :])
    sc = e8m0_times_2p126_bf16(tl.load(s_cols + (k0 // 32 + kb).to(tl.int64)[:, None] * NP))
    s_lo, s_hi = tl.split(tl.trans(sc).reshape(BN, BK // 64, 2))
    s_lo = tl.broadcast_to(s_lo[:, :, None], (BN, BK // 64, 32)).reshape(BN, BK // 2)
    s_hi = tl.broadcast_to(s_hi[:, :, None], (BN, BK // 64, 32)).reshape(BN, BK // 2)
    w_lo, w_hi = unpack_hopper_fused_bf16(packed, s_lo, s_hi)
    w = tl.join(w_lo, w_hi).reshape(BN, BK)
    rk = k0 + tl.arange(0, BK)
    xt = tl.load(x_cols + rk[:, None], mask=m_ok[None, :], other=0.0)
    return dot_bf16(w, xt, acc)


def x_permuted(x: torch.Tensor) -> torch.Tensor:
    """x [M, K] (K a multiple of 64) with each 64-group in the one-dot order j, 32 + j, ..."""
    m, k = x.shape
    return x.view(m, k // 64, 2, 32).transpose(2, 3).reshape(m, k).contiguous()


def one_dot_linear(xp, hw, out, BN=64, BM=64, BK=128, warps=4, stages=3, group=8):
    m, k = xp.shape
    n = hw.shape[0]
    kp, np_ = hw.codes.shape[1] * 2, hw.codes.shape[0]
    grid = (triton.cdiv(n, BN) * triton.cdiv(m, BM),)
    _one_dot_kernel[grid](xp, hw.codes, hw.scales, out, m, n, k, kp, np_, xp.stride(0),
                          out.stride(0), BN=BN, BM=BM, BK=BK, GROUP_N=group, num_warps=warps,
                          num_stages=stages)
    return out


def main():
    import mxfp4
    from mxfp4.bench.kernels import _copies, floor_us, graph_times_us
    from mxfp4.kernels import linear as kl
    from mxfp4.layouts import prepack

    interpret = not torch.cuda.is_available()
    dev = torch.device("cpu" if interpret else "cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    shapes = [(256, 64), (320, 128)] if interpret else [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]
    ms = [1, 70] if interpret else [16, 64, 256, 1024, 4096]
    tiles = [(64, 16, 128, 4, 3)] if interpret else [
        (64, 16, 128, 4, 3), (64, 16, 128, 4, 4), (64, 32, 128, 4, 3), (64, 64, 128, 4, 3),
        (64, 64, 128, 4, 4), (64, 128, 128, 4, 3), (128, 128, 128, 8, 3), (64, 256, 128, 4, 3),
        (128, 256, 128, 8, 3), (64, 64, 64, 4, 4), (64, 128, 64, 4, 4)]
    for k, n in shapes:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        ref_w = mxfp4.dequantize(w).double()
        ws = [prepack(w)] if interpret else _copies(lambda: prepack(w), w.nbytes)
        for m in ms:
            x = torch.randn(m, k, generator=g, device=dev).bfloat16()
            xp = x_permuted(x)
            ref = x.double() @ ref_w.T
            out = torch.empty(m, n, device=dev, dtype=torch.bfloat16)
            ok = []
            for t in tiles:
                if t[1] > max(16, 2 * m) and t != tiles[0]:
                    continue
                y = one_dot_linear(xp, ws[0], out, *t)
                err = ((y.double() - ref).norm() / ref.norm()).item()
                assert err < 1e-2, (k, n, m, t, err)
                ok.append(t)
            if interpret:
                print(f"{k}->{n} M={m}: one-dot agrees with float64 ({ok})")
                continue
            outs = [torch.empty(m, n, device=dev, dtype=torch.bfloat16) for _ in ws]
            calls = [[lambda i=i: mxfp4.linear(x, ws[i]) for i in range(len(ws))]]
            calls += [[lambda i=i, t=t: one_dot_linear(xp, ws[i], outs[i], *t) for i in range(len(ws))]
                      for t in ok]
            ts = graph_times_us(calls)
            fl = floor_us(n * k * 4.25 / 8 + 2 * m * (n + k))
            fl = max(fl, 2 * m * n * k / 723e12 * 1e6)
            best = min(range(len(ok)), key=lambda i: ts[i + 1])
            print(f"{k}->{n} M={m} floor {fl:.1f}: linear {ts[0]:.1f} us | best one-dot {ts[best + 1]:.1f} "
                  f"{ok[best]} | " + " ".join(f"{t[:3]}{'w8' if t[3] == 8 else ''}s{t[4]}:{v:.1f}"
                                             for t, v in zip(ok, ts[1:])), flush=True)


if __name__ == "__main__":
    main()
