"""On a GPU: the tensor-core GEMV (kernels/mma_gemv.py) against mxfp4.linear's current choice.

Checks the GEMV against float64 math first, then times every configuration of the sweep and
the default dispatch interleaved (bench.kernels.graph_times_us), weights rotated past L2.
Run: PYTHONPATH=src python3 benchmarks/mma_gemv_sweep.py [M ...]
"""

import sys

import torch

import mxfp4
from mxfp4.bench.kernels import _copies, floor_us, graph_times_us
from mxfp4.kernels import linear as kl
from mxfp4.layouts import prepack

SHAPES = [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]


def configs(m, n, kp, sm_count=132):
    """K warps x K splits, up to 64 warps per SM (one wave)."""
    out = []
    steps = -(-kp // 128)
    tiles = -(-n // 16)
    for kw in (4, 8, 16):
        for split in (1, 2, 4, 8, 16):
            if steps // split < kw or tiles * kw * split > 64 * sm_count:
                continue
            out.append(dict(MMA_GEMV=True, K_WARPS=kw, SPLIT_K=split, TWO_N=m > 8,
                            num_warps=kw, num_stages=1))
    return out


def timed_configs(ms, configs, shapes=SHAPES):
    """For each shape and M: every configs(m, n, kp) checked against float64, then timed
    interleaved with mxfp4.linear's default; yields (k, n, m, default us, [(config, us)]
    fastest first, floor us)."""
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    for k, n in shapes:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        ws = _copies(lambda: prepack(w), w.nbytes)
        ref_w = mxfp4.dequantize(w).double()
        for m in ms:
            xs = [torch.randn(m, k, generator=g, device=dev).bfloat16() for _ in range(4)]
            ref = xs[0].double() @ ref_w.T
            cfgs = configs(m, n, ws[0].codes.shape[1] * 2)
            for c in cfgs:
                y = kl.linear(xs[0], ws[0], config=c)
                err = ((y.double() - ref).norm() / ref.norm()).item()
                assert err < 1e-2, (k, n, m, c, err)
            calls = [[lambda i=i: mxfp4.linear(xs[i % 4], ws[i]) for i in range(len(ws))]]
            calls += [[lambda i=i, c=c: kl.linear(xs[i % 4], ws[i], config=c) for i in range(len(ws))]
                      for c in cfgs]
            ts = graph_times_us(calls)
            fl = max(floor_us(n * k * 4.25 / 8 + 2 * m * (n + k)), 2 * m * n * k / 723e6)
            yield k, n, m, ts[0], sorted(zip(cfgs, ts[1:]), key=lambda p: p[1]), fl


def main(ms):
    for k, n, m, default, ranked, fl in timed_configs(ms, configs):
        for c, t in ranked:
            print(f"  {k}->{n} M={m} kw={c['K_WARPS']} split={c['SPLIT_K']}: {t:.1f} us", flush=True)
        c, t = ranked[0]
        print(f"{k}->{n} M={m}: default {default:.1f} us, best mma-gemv {t:.1f} us "
              f"(kw={c['K_WARPS']} split={c['SPLIT_K']}), floor {fl:.1f}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 16])
