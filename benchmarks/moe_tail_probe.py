"""On a GPU: the MoE batch path at the given T with and without tail GEMMs (MoEConfig.tail:
each expert's last rows past a multiple of the 128-row block run in smaller blocks), every
variant checked against the reference, then timed interleaved (CUDA graphs over 2 inputs).
Run: PYTHONPATH=src python3 benchmarks/moe_tail_probe.py [T ...]
"""

import sys

import torch

from mxfp4.bench.moe import compare_configs, make_layer
from mxfp4.kernels.moe import GemmConfig as G, MoEConfig


def variants():
    big = G(128, 64, 64, 4, 3)
    out = {"128 blocks": MoEConfig(False, big, big), "64 blocks": MoEConfig(False, G(64, 64, 64),
                                                                           G(64, 64, 64))}
    for tail in (G(16, 64, 256), G(32, 64, 128), G(64, 64, 64)):
        out[f"128 + {tail.bm}-row tails"] = MoEConfig(False, big, big, tail=tail)
    return out


def main(tokens):
    layer = make_layer(device=torch.device("cuda"))
    named = variants()
    for T in tokens:
        ts = compare_configs(layer, T, list(named.values()), reps=2, min_us=20000)
        print(f"T={T}: " + " | ".join(f"{n} {t:.0f}" for n, t in zip(named, ts)), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2048, 4096])
