"""On a GPU: does the order in which programs walk a tensor change quantize/dequantize speed?

The default 2-D grid runs row tiles fastest (neighbouring programs 8 rows = 128 KB apart);
a 1-D grid over tiles in row-major order (persistent mode with one tile per program) has
neighbouring programs write neighbouring bytes. Also times a pure write and a copy of the
same size, and the M = 1 GEMV on a weight 4x the benchmark's (steady-state streaming rate).
Run: PYTHONPATH=src python3 benchmarks/order_probe.py
"""

import torch

import mxfp4
from mxfp4.bench.kernels import _copies, graph_times_us
from mxfp4.kernels import linear as kl
from mxfp4.kernels import quantize as kq
from mxfp4.layouts import prepack

ONE_TILE_PER_PROGRAM = 10**9  # "persistent" programs per SM: more than tiles, so one each


def codec(dev):
    g = torch.Generator(device=dev).manual_seed(0)
    n = 8192
    xs = _copies(lambda: torch.randn(n, n, generator=g, device=dev).bfloat16(), n * n * 2)
    ws = [mxfp4.quantize(x) for x in xs]
    ref = kq.dequantize(ws[0].codes, ws[0].scales, (n, n), 1, 32, torch.bfloat16)
    tiles = {"deq default": None}
    for el in (2048, 4096, 8192):
        for warps in (4, 8):
            for cols in (256, 1024):
                tiles[f"deq 1d el={el} w={warps} cols={cols}"] = (el, warps, False,
                                                                  ONE_TILE_PER_PROGRAM, cols)
    calls, names = [], []
    for name, t in tiles.items():
        out = kq.dequantize(ws[0].codes, ws[0].scales, (n, n), 1, 32, torch.bfloat16, tile=t)
        assert torch.equal(out.view(torch.int16), ref.view(torch.int16)), name
        calls.append([lambda w=w, t=t: kq.dequantize(w.codes, w.scales, (n, n), 1, 32,
                                                     torch.bfloat16, tile=t) for w in ws])
        names.append(name)
    qref = kq.quantize(xs[0], 1, 32, "floor", "nearest", None)
    for name, t in {"q default": None,
                    "q 1d el=4096 cols=1024": (4096, 4, False, ONE_TILE_PER_PROGRAM, 1024),
                    "q 1d el=2048 cols=256": (2048, 4, False, ONE_TILE_PER_PROGRAM, 256),
                    "q 1d el=4096 cols=256": (4096, 4, False, ONE_TILE_PER_PROGRAM, 256)}.items():
        q = kq.quantize(xs[0], 1, 32, "floor", "nearest", None, tile=t)
        assert torch.equal(q[0], qref[0]) and torch.equal(q[1], qref[1]), name
        calls.append([lambda x=x, t=t: kq.quantize(x, 1, 32, "floor", "nearest", None, tile=t)
                      for x in xs])
        names.append(name)
    outs = _copies(lambda: torch.empty(n, n, dtype=torch.bfloat16, device=dev), n * n * 2)
    calls.append([lambda o=o: o.fill_(1.5) for o in outs])
    names.append("fill 134 MB")
    calls.append([lambda i=i: outs[i].copy_(xs[i % len(xs)]) for i in range(len(outs))])
    names.append("copy 8192^2 bf16")
    for name, t in zip(names, graph_times_us(calls)):
        print(f"{name:40s} {t:8.2f} us", flush=True)


def gemv(dev):
    g = torch.Generator(device=dev).manual_seed(1)
    for k, n in [(4096, 14336), (4096, 57344), (14336, 4096), (14336, 16384)]:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        ws = _copies(lambda: prepack(w), w.nbytes)
        x = torch.randn(1, k, generator=g, device=dev).bfloat16()
        t, = graph_times_us([[lambda w=w: mxfp4.linear(x, w) for w in ws]])
        print(f"gemv M=1 {k}->{n}: {t:.2f} us, {w.nbytes / t / 1e6:.2f} TB/s", flush=True)
    # the MoE decode's W1 / W2 at T = 1 as one dense GEMV each (4 experts' rows stacked)
    for k, n in [(2880, 23040), (2880, 11520)]:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        ws = _copies(lambda: prepack(w), w.nbytes)
        x = torch.randn(1, k, generator=g, device=dev).bfloat16()
        cfgs = [dict(MMA_GEMV=True, K_WARPS=kw, SPLIT_K=1, TWO_N=False,
                     num_warps=kw, num_stages=1) for kw in (2, 4, 8)]
        ts = graph_times_us([[lambda w=w: mxfp4.linear(x, w) for w in ws]]
                            + [[lambda w=w, c=c: kl.linear(x, w, config=c) for w in ws]
                               for c in cfgs])
        print(f"gemv M=1 {k}->{n}: default {ts[0]:.2f} us; K warps 2/4/8: "
              + " / ".join(f"{t:.2f}" for t in ts[1:]), flush=True)


if __name__ == "__main__":
    codec(torch.device("cuda"))
    gemv(torch.device("cuda"))
