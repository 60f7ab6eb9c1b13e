"""On a GPU: the MoE decode path (T * k <= 16) with each given W1 / W2 warp split on the
tensor-core GEMV (MoEConfig.gemv), checked against the reference, then timed interleaved with
CUDA graphs over 16 inputs per T (bench.kernels.graph_times_us; the layer's experts are 1.7 GB
and the 16 inputs route to different ones, so few weights are met in L2).
Run: PYTHONPATH=src python3 benchmarks/moe_decode_probe.py [W1xW2 ...]   e.g. 2x4 2x2
"""

import dataclasses
import sys

import torch

from mxfp4.bench.kernels import graph_times_us
from mxfp4.bench.moe import make_layer
from mxfp4.kernels.moe import default_config


def main(splits, tokens=(1, 2, 4)):
    dev = torch.device("cuda")
    layer = make_layer(device=dev)
    for T in tokens:
        g = torch.Generator(device=dev).manual_seed(T)
        inputs = [torch.randn(T, layer.hidden_size, generator=g, device=dev).bfloat16()
                  for _ in range(16)]
        ref = layer(inputs[0], backend="reference").float()
        base = default_config(T, layer.experts_per_token, layer.num_experts)
        cfgs = [dataclasses.replace(base, gemv=s) for s in splits]
        for c in cfgs:
            out = layer(inputs[0], backend="triton", config=c).float()
            err = ((out - ref).norm() / ref.norm()).item()
            assert err < 1e-2, (T, c.gemv, err)
        ts = graph_times_us([[lambda x=x, c=c: layer(x, backend="triton", config=c)
                              for x in inputs] for c in cfgs])
        for c, t in zip(cfgs, ts):
            print(f"T={T} gemv W1 {c.gemv[0]} / W2 {c.gemv[1]} warps: {t:.2f} us", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:] or ["2x4", "2x2", "2x1", "2x8"]
    main([tuple(int(v) for v in a.split("x")) for a in args])
