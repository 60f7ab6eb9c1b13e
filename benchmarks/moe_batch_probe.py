"""On a GPU: the MoE batch path at the given T with the tiled grouped GEMMs (the default
configuration) against the tensor-core GEMV over row blocks of 8 or 16 sorted pairs
(kernels/moe_gemv.py), every variant checked against the reference, then timed interleaved
(CUDA graphs over 16 inputs per T, or 4 above T = 64).
Run: PYTHONPATH=src python3 benchmarks/moe_batch_probe.py [T ...]
"""

import sys

import torch

from mxfp4.bench.kernels import graph_times_us
from mxfp4.bench.moe import make_layer
from mxfp4.kernels.moe import GemmConfig, MoEConfig, default_config


def variants(T, k, E):
    out = {"default": default_config(T, k, E),
           "tiled 16x64x256": MoEConfig(False, GemmConfig(16, 64, 256), GemmConfig(16, 64, 256))}
    if T * k / E > 12:
        out["tiled 32x64x128/s4"] = MoEConfig(False, GemmConfig(32, 64, 128, 4, 4),
                                              GemmConfig(32, 64, 128, 4, 4))
        out["tiled 64x64x64"] = MoEConfig(False, GemmConfig(64, 64, 64), GemmConfig(64, 64, 64))
    for bm in (8, 16):
        for warps in ((4, 4), (2, 2), (8, 8), (2, 4), (4, 2)):
            g = GemmConfig(bm, 16, 128)
            out[f"gemv bm{bm} w{warps[0]}/{warps[1]}"] = MoEConfig(False, g, g, gemv=warps)
    return out


def main(tokens):
    dev = torch.device("cuda")
    layer = make_layer(device=dev)
    k, E = layer.experts_per_token, layer.num_experts
    for T in tokens:
        g = torch.Generator(device=dev).manual_seed(T)
        xs = [torch.randn(T, layer.hidden_size, generator=g, device=dev).bfloat16()
              for _ in range(16 if T <= 64 else 4)]
        ref = layer(xs[0], backend="reference").float()
        named = variants(T, k, E)
        for name, cfg in named.items():
            out = layer(xs[0], backend="triton", config=cfg).float()
            err = ((out - ref).norm() / ref.norm()).item()
            assert err < 1e-2, (T, name, err)
        ts = graph_times_us([[lambda x=x, c=cfg: layer(x, backend="triton", config=c) for x in xs]
                             for cfg in named.values()])
        print(f"T={T}: " + " | ".join(f"{n} {t:.1f}" for n, t in zip(named, ts)), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [16, 64, 256])
