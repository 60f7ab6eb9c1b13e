"""On a GPU: tiles of the tiled W4A16 kernel for 64 < M < 512 (kernels/linear.pick_config).

Every configuration is checked against float64 first, then all are timed interleaved with
mxfp4.linear's default (bench.kernels.graph_times_us), weights rotated past L2.
Run: PYTHONPATH=src python3 benchmarks/mid_m_sweep.py [M ...]   (default 128 256)
"""

import sys

import torch

import mxfp4
from mxfp4.bench.kernels import _copies, floor_us, graph_times_us
from mxfp4.kernels import linear as kl
from mxfp4.layouts import prepack

SHAPES = [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]
TILES = [(64, 64, 64, 4, 3), (64, 64, 128, 4, 3), (64, 64, 256, 4, 3), (64, 128, 64, 4, 3),
         (64, 128, 128, 4, 3), (64, 32, 128, 4, 3), (128, 128, 64, 8, 4), (128, 64, 64, 8, 3)]


def configs(m, n, kp):
    out = []
    for bn, bm, bk, warps, stages in TILES:
        for split in (1, 2, 4):
            if kp // split < 640 and split > 1:
                continue
            out.append(dict(BN=bn, BM=bm, BK=bk, SPLIT_K=split, GROUP_N=8, SWAP=True,
                            num_warps=warps, num_stages=stages))
    return out


def main(ms):
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    for k, n in SHAPES:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        ws = _copies(lambda: prepack(w), w.nbytes)
        ref_w = mxfp4.dequantize(w).double()
        for m in ms:
            x = torch.randn(m, k, generator=g, device=dev).bfloat16()
            ref = x.double() @ ref_w.T
            cfgs = configs(m, n, ws[0].codes.shape[1] * 2)
            for c in cfgs:
                err = ((kl.linear(x, ws[0], config=c).double() - ref).norm() / ref.norm()).item()
                assert err < 1e-2, (k, n, m, c, err)
            calls = [[lambda i=i: mxfp4.linear(x, ws[i]) for i in range(len(ws))]]
            calls += [[lambda i=i, c=c: kl.linear(x, ws[i], config=c) for i in range(len(ws))]
                      for c in cfgs]
            ts = graph_times_us(calls)
            fl = max(floor_us(n * k * 4.25 / 8 + 2 * m * (n + k)), 2 * m * n * k / 723e6)
            ranked = sorted(zip(cfgs, ts[1:]), key=lambda p: p[1])
            print(f"{k}->{n} M={m} floor {fl:.1f}: default {ts[0]:.1f} us | " + " | ".join(
                f"{c['BN']}x{c['BM']}x{c['BK']} w{c['num_warps']} s{c['num_stages']} "
                f"split {c['SPLIT_K']}: {t:.1f}" for c, t in ranked[:5]), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [128, 256])
