"""On a GPU: the MoE decode path (T * k <= 16) with each given W1 / W2 warp split on the
tensor-core GEMV (MoEConfig.gemv), checked against the reference, then timed interleaved with
CUDA graphs over 16 inputs per T (bench.kernels.graph_times_us; the layer's experts are 1.7 GB
and the 16 inputs route to different ones, so few weights are met in L2).
A trailing "o" (e.g. 4x4o) runs W1 and W2 in one launch (MoEConfig.one_launch), and "oN"
(4x4o72) caps that launch at N registers (MoEConfig.gemv_maxnreg).
Run: PYTHONPATH=src python3 benchmarks/moe_decode_probe.py [T=1,2,4] [W1xW2 ...]   e.g. 4x4 4x4o
"""

import dataclasses
import re
import sys

import torch

from mxfp4.bench.moe import compare_configs, make_layer
from mxfp4.kernels.moe import default_config


def main(splits, tokens=(1, 2, 4)):
    layer = make_layer(device=torch.device("cuda"))
    for T in tokens:
        base = default_config(T, layer.experts_per_token, layer.num_experts)
        cfgs = [dataclasses.replace(base, gemv=s[:2], one_launch=s[2], gemv_maxnreg=s[3])
                for s in splits]
        for c, t in zip(cfgs, compare_configs(layer, T, cfgs)):
            how = "one launch" if c.one_launch else "two launches"
            how += f", {c.gemv_maxnreg} registers" if c.gemv_maxnreg else ""
            print(f"T={T} gemv W1 {c.gemv[0]} / W2 {c.gemv[1]} warps, {how}: {t:.2f} us",
                  flush=True)


if __name__ == "__main__":
    args = sys.argv[1:] or ["4x4", "4x4o"]
    tokens = [tuple(int(t) for t in a[2:].split(",")) for a in args if a.startswith("T=")]
    splits = [re.fullmatch(r"(\d+)x(\d+)(o?)(\d*)", a).groups()
              for a in args if not a.startswith("T=")]
    main([(int(w1), int(w2), o == "o", int(r) if r else None) for w1, w2, o, r in splits],
         *tokens)
