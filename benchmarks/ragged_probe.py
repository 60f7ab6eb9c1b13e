"""On a GPU: the tiled kernels with x's K bound checked on every step (RAGGED_K=True, the code
before the eleventh session) against checking it only where K is not a multiple of 64.

Interleaved CUDA graphs (bench.kernels.graph_times_us), every variant first checked against
the reference: the MoE layer at GPT-OSS-120B shapes (the W1 / W2 kernels swapped for ones
that force the check, `bench.moe.patched`) and mxfp4.linear on the tiled kernel (M = 16-256).
Run: PYTHONPATH=src python3 benchmarks/ragged_probe.py [moe] [linear]
"""

import sys

import torch

import mxfp4
from mxfp4.bench.kernels import _copies, graph_times_us
from mxfp4.bench.moe import make_layer, patched
from mxfp4.kernels import linear as kl
from mxfp4.kernels import moe
from mxfp4.layouts import prepack


class _Checked:
    """A tiled MoE kernel whose launches always check x against K."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, grid):
        launch = self.kernel[grid]
        return lambda *args, **kw: launch(*args, **{**kw, "RAGGED_K": True})


def _checked(fn):
    return patched(moe, "_w1_kernel", _Checked(moe._w1_kernel),
                   patched(moe, "_w2_kernel", _Checked(moe._w2_kernel), fn))


def moe_rows(tokens=(16, 64, 256, 1024, 4096, 16384)):
    layer = make_layer(device=torch.device("cuda"))
    for T in tokens:
        g = torch.Generator(device="cuda").manual_seed(T)
        xs = [torch.randn(T, layer.hidden_size, generator=g, device="cuda").bfloat16()
              for _ in range(16 if T <= 256 else 4)]
        ref = layer(xs[0], backend="reference").float()
        for fn in (lambda: layer(xs[0]), _checked(lambda: layer(xs[0]))):
            err = ((fn().float() - ref).norm() / ref.norm()).item()
            assert err < 1e-2, (T, err)
        new, old = graph_times_us([[lambda x=x: layer(x) for x in xs],
                                   [_checked(lambda x=x: layer(x)) for x in xs]])
        print(f"moe T={T}: checked {old:.1f} us, unchecked {new:.1f} us ({new / old - 1:+.1%})",
              flush=True)


def linear_rows(ms=(16, 64, 128, 256)):
    g = torch.Generator(device="cuda").manual_seed(0)
    for k, n in [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device="cuda") * 0.02)
        ws = _copies(lambda: prepack(w), w.nbytes)
        ref_w = mxfp4.dequantize(w).double()
        for m in ms:
            if kl.decode_config(m, n, k, k, torch.bfloat16, ws[0].max_scale, 132):
                continue  # a GEMV: no tiled kernel
            x = torch.randn(m, k, generator=g, device="cuda").bfloat16()
            base = kl.pick_config(m, n, k, kl._sm_count(x.device))
            cfgs = [dict(base, RAGGED_K=False), dict(base, RAGGED_K=True)]
            ref = x.double() @ ref_w.T
            for c in cfgs:
                err = ((kl.linear(x, ws[0], config=c).double() - ref).norm() / ref.norm()).item()
                assert err < 1e-2, (k, n, m, c, err)
            new, old = graph_times_us([[lambda w=w, c=c: kl.linear(x, w, config=c) for w in ws]
                                       for c in cfgs])
            print(f"linear {k}->{n} M={m}: checked {old:.1f} us, unchecked {new:.1f} us "
                  f"({new / old - 1:+.1%})", flush=True)


if __name__ == "__main__":
    parts = sys.argv[1:] or ["linear", "moe"]
    if "linear" in parts:
        linear_rows()
    if "moe" in parts:
        moe_rows()
