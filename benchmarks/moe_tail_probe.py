"""On a GPU: the MoE batch path at the given T with and without tail GEMMs (MoEConfig.tail:
each expert's last rows past a multiple of the 128-row block run in smaller blocks), every
variant checked against the reference, then timed interleaved (CUDA graphs over 2 inputs).
Run: PYTHONPATH=src python3 benchmarks/moe_tail_probe.py [T ...]
"""

import sys

import torch

from mxfp4.bench.kernels import graph_times_us
from mxfp4.bench.moe import make_layer
from mxfp4.kernels.moe import GemmConfig as G, MoEConfig


def variants():
    big = G(128, 64, 64, 4, 3)
    out = {"128 blocks": MoEConfig(False, big, big), "64 blocks": MoEConfig(False, G(64, 64, 64),
                                                                           G(64, 64, 64))}
    for tail in (G(16, 64, 256), G(32, 64, 128), G(64, 64, 64)):
        out[f"128 + {tail.bm}-row tails"] = MoEConfig(False, big, big, tail=tail)
    return out


def main(tokens):
    dev = torch.device("cuda")
    layer = make_layer(device=dev)
    for T in tokens:
        g = torch.Generator(device=dev).manual_seed(T)
        xs = [torch.randn(T, layer.hidden_size, generator=g, device=dev).bfloat16()
              for _ in range(2)]
        ref = layer(xs[0], backend="reference").float()
        named = variants()
        for name, cfg in named.items():
            out = layer(xs[0], backend="triton", config=cfg).float()
            err = ((out - ref).norm() / ref.norm()).item()
            assert err < 1e-2, (T, name, err)
        ts = graph_times_us([[lambda x=x, c=cfg: layer(x, backend="triton", config=c) for x in xs]
                             for cfg in named.values()], min_us=20000)
        print(f"T={T}: " + " | ".join(f"{n} {t:.0f}" for n, t in zip(named, ts)), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2048, 4096])
