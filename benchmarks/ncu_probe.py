"""On a GPU, under Nsight Compute: one MoE layer forward at T tokens and one mxfp4.linear call,
so that `ncu` can report each kernel's stall reasons and issue rates. Not a timing tool.
Run: ncu --section SpeedOfLight --section WarpStateStats ... python3 benchmarks/ncu_probe.py
"""

import sys

import torch

import mxfp4
from mxfp4.bench.moe import make_layer
from mxfp4.layouts import prepack


def main() -> None:
    dev = torch.device("cuda")
    tokens = [int(t) for t in sys.argv[1:]] or [1]
    layer = make_layer(device=dev, E=32)
    for t in tokens:
        x = torch.randn(t, 2880, device=dev).bfloat16()
        layer(x)
    w = prepack(mxfp4.quantize(torch.randn(14336, 4096, device=dev) * 0.02))
    x = torch.randn(1, 4096, device=dev).bfloat16()
    mxfp4.linear(x, w)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
