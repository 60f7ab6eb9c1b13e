"""On a GPU: the tiled kernels with x's K bound checked on every step (RAGGED_K=True, the code
before the eleventh session) against checking it only where K is not a multiple of 64.

Interleaved CUDA graphs (bench.kernels.graph_times_us), every variant first checked against
the reference: the MoE layer at GPT-OSS-120B shapes (the W1 / W2 kernels swapped for ones
that force the check, `bench.moe.patched`) and mxfp4.linear on the tiled kernel (M = 16-256,
against its default through mma_gemv_sweep.timed_configs).
Run: PYTHONPATH=src python3 benchmarks/ragged_probe.py [moe] [linear]
"""

import sys

import torch

from mma_gemv_sweep import timed_configs  # benchmarks/ is the script's directory
from mxfp4.bench.kernels import graph_times_us
from mxfp4.bench.moe import make_layer, patched
from mxfp4.kernels import linear as kl
from mxfp4.kernels import moe


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


def _checked_config(m, n, kp):
    """The tiled kernel's own configuration with the K check forced (none for a GEMV)."""
    if kl.decode_config(m, n, kp, kp, torch.bfloat16, 128, 132):
        return []
    return [dict(kl.pick_config(m, n, kp, 132), RAGGED_K=True)]


def linear_rows(ms=(16, 64, 128, 256)):
    for k, n, m, default, ranked, _ in timed_configs(ms, _checked_config):
        for _, old in ranked:
            print(f"linear {k}->{n} M={m}: checked {old:.1f} us, unchecked {default:.1f} us "
                  f"({default / old - 1:+.1%})", flush=True)


if __name__ == "__main__":
    parts = sys.argv[1:] or ["linear", "moe"]
    if "linear" in parts:
        linear_rows()
    if "moe" in parts:
        moe_rows()
