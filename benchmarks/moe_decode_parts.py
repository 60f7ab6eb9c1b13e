"""On a GPU: what each launch of the MoE decode adds to a layer call, by leaving it out.

The layer at T tokens is timed (CUDA graphs over 16 inputs, interleaved) whole and with one of
its launches replaced: the combine kernel skipped, the expert GEMVs skipped, or the router
replaced by a copy of precomputed experts and weights (a graph memcpy). The differences are
each launch's marginal cost inside the pipelined sequence (PDL overlaps neighbours), which a
profiler's per-kernel durations do not show.
Run: PYTHONPATH=src python3 benchmarks/moe_decode_parts.py [T ...]
"""

import sys

import torch

from mxfp4.bench.kernels import graph_times_us
from mxfp4.bench.moe import make_layer, patched
from mxfp4.kernels import moe as km
from mxfp4.kernels import moe_gemv


class _Skip:
    """Stands in for a Triton kernel (kernel[grid](...)) and launches nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


class _Routed:
    """Stands in for the router kernel: copies precomputed experts (the next of a cycle of
    random sets, so that successive calls read different experts, as routed inputs do) and
    equal weights into its outputs."""

    def __init__(self, ids, k):
        self.ids, self.k, self.calls = ids, k, 0
        self.wts = torch.full((ids.shape[1],), 1.0 / k, device=ids.device)

    def __getitem__(self, grid):
        def fill(x, rw, rb, logits, ids, wts, *args, **kwargs):
            ids.copy_(self.ids[self.calls % len(self.ids)])
            wts.copy_(self.wts)
            self.calls += 1
        return fill


def main(tokens):
    dev = torch.device("cuda")
    layer = make_layer(device=dev)
    E, k = layer.num_experts, layer.experts_per_token
    for T in tokens:
        g = torch.Generator(device=dev).manual_seed(T)
        xs = [torch.randn(T, layer.hidden_size, generator=g, device=dev).bfloat16()
              for _ in range(16)]
        cpu = torch.Generator().manual_seed(T)
        ids = torch.stack([torch.randperm(E, generator=cpu)[:T * k] for _ in range(16)])
        routed = _Routed(ids.to(dev, torch.int32), k)
        variants = {
            "whole": lambda fn: fn,
            "no combine": lambda fn: patched(km, "_combine_kernel", _Skip(), fn),
            "no expert GEMVs": lambda fn: patched(moe_gemv, "launch", lambda *a, **kw: None, fn),
            "router -> memcpy": lambda fn: patched(km, "_logits_kernel", routed, fn),
        }
        lists = [[wrap(lambda x=x: layer(x, backend="triton")) for x in xs]
                 for wrap in variants.values()]
        times = graph_times_us(lists)
        print(f"T={T}: " + " | ".join(f"{n} {t:.2f} us" for n, t in zip(variants, times)),
              flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 2, 4])
