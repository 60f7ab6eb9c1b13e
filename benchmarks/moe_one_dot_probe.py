"""On a GPU: the MoE batch GEMMs with one dot per K step (GemmConfig.one_dot; x and a in
the one-dot order) against the default two dots, every variant checked against the
reference, then timed interleaved (CUDA graphs).
Run: PYTHONPATH=src python3 benchmarks/moe_one_dot_probe.py [T ...]
"""

import dataclasses
import sys

import torch

from mxfp4.bench.moe import compare_configs, make_layer
from mxfp4.kernels.moe import default_config


def variants(T):
    base = default_config(T, 4, 128)

    def each(**kw):
        tail = dataclasses.replace(base.tail, **kw) if base.tail else None
        return dataclasses.replace(base, w1=dataclasses.replace(base.w1, **kw),
                                   w2=dataclasses.replace(base.w2, **kw), tail=tail)
    out = {"default": base}
    for bk in (64, 128):
        if bk != base.w1.bk:
            out[f"bk{bk}"] = each(bk=bk)
        out[f"one-dot bk{bk}"] = each(bk=bk, one_dot=True)
        out[f"one-dot bk{bk} s4"] = each(bk=bk, one_dot=True, stages=4)
    if base.w1.bm >= 64:
        out["one-dot bk128 bn128w8"] = each(bk=128, bn=128, warps=8, one_dot=True)
    return out


def main(tokens):
    layer = make_layer(device=torch.device("cuda"))
    for T in tokens:
        named = variants(T)
        reps = 16 if T <= 64 else 2
        ts = compare_configs(layer, T, list(named.values()), reps=reps, min_us=20000 if T > 256 else 3000)
        print(f"T={T}: " + " | ".join(f"{n} {t:.1f}" for n, t in zip(named, ts)), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [16, 64, 256, 1024, 4096, 16384])
