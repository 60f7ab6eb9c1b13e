"""On a GPU: what the split-K / routing arrival counters cost inside CUDA graphs.

`kernels.linear.arrival_counters` keeps one zeroed buffer per (device, stream); a call being
captured on a stream it has not seen allocates (and zero-fills, a captured memset) a new one
each time. This times M = 1 linear with split-K and the MoE decode with the counters as they
are, and with one buffer made beforehand (`--fixed`), interleaved.
Run: PYTHONPATH=src python3 benchmarks/counters_probe.py
"""

import torch

import mxfp4
from mxfp4.bench.kernels import _copies, graph_times_us
from mxfp4.bench.moe import make_layer
from mxfp4.kernels import linear as kl
from mxfp4.kernels import moe as km
from mxfp4.layouts import prepack


def main():
    dev = torch.device("cuda")
    fixed = torch.zeros(1 << 16, dtype=torch.int32, device=dev)
    real = kl.arrival_counters

    def patched(flag):
        def run(fn):
            def call():
                kl.arrival_counters = (lambda d: fixed) if flag else real
                km.arrival_counters = kl.arrival_counters
                try:
                    return fn()
                finally:
                    kl.arrival_counters = km.arrival_counters = real
            return call
        return run

    g = torch.Generator(device=dev).manual_seed(0)
    for k, n in [(14336, 4096), (4096, 14336)]:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        ws = _copies(lambda: prepack(w), w.nbytes)
        x = torch.randn(1, k, generator=g, device=dev).bfloat16()
        ts = graph_times_us([[patched(f)(lambda w=w: mxfp4.linear(x, w)) for w in ws]
                             for f in (False, True)])
        print(f"linear M=1 {k}->{n}: counters per stream {ts[0]:.2f} us, fixed {ts[1]:.2f} us")
    layer = make_layer(device=dev)
    for T in (1, 2, 4):
        xs = [torch.randn(T, layer.hidden_size, generator=g, device=dev).bfloat16()
              for _ in range(16)]
        ts = graph_times_us([[patched(f)(lambda x=x: layer(x, backend="triton")) for x in xs]
                             for f in (False, True)])
        print(f"MoE T={T}: counters per stream {ts[0]:.2f} us, fixed {ts[1]:.2f} us", flush=True)


if __name__ == "__main__":
    main()
