"""On a GPU: the MoE decode (T = 1, 2, 4) with the router kernel at 1, 2, 4 or 8 warps per
program (kernels.moe.LOGITS_WARPS; its last program per token does the top-k), interleaved.
Run: PYTHONPATH=src python3 benchmarks/logits_probe.py
"""

import torch

from mxfp4.bench.kernels import graph_times_us
from mxfp4.bench.moe import make_layer
from mxfp4.kernels import moe as km

WARPS = (1, 2, 4, 8)


def main():
    dev = torch.device("cuda")
    layer = make_layer(device=dev)
    for T in (1, 2, 4):
        g = torch.Generator(device=dev).manual_seed(T)
        xs = [torch.randn(T, layer.hidden_size, generator=g, device=dev).bfloat16()
              for _ in range(16)]
        ref = layer(xs[0], backend="reference").float()

        def with_warps(w, x):
            def call():
                km.LOGITS_WARPS = w
                try:
                    return layer(x, backend="triton")
                finally:
                    km.LOGITS_WARPS = 4
            return call
        for w in WARPS:
            out = with_warps(w, xs[0])().float()
            assert ((out - ref).norm() / ref.norm()).item() < 1e-2, w
        ts = graph_times_us([[with_warps(w, x) for x in xs] for w in WARPS])
        print(f"T={T}: " + " | ".join(f"{w} warps {t:.2f} us" for w, t in zip(WARPS, ts)),
              flush=True)


if __name__ == "__main__":
    main()
