"""On a GPU: mxfp4.linear decode (HopperWeight, M = 1, 16, 64), the default tiles against
4-warp tiles with several split-K factors, on the issue's shapes. Prints a table.
Run: PYTHONPATH=src python3 benchmarks/linear_bk_probe.py
"""

import torch
import torch.nn.functional as F

import mxfp4
from mxfp4.bench.kernels import _copies, graph_time_us
from mxfp4.kernels import linear as kl
from mxfp4.layouts import prepack

SHAPES = [(2880, 5760), (2880, 2880), (4096, 14336), (14336, 4096)]


def variants(m, n, kp):
    base = kl.pick_config(m, n, kp, 132)
    out = [("default", None)]
    for split in (1, 2, 4, 8):  # one warpgroup per CTA, 64 weight rows (the MoE's best tiles)
        out.append((f"bn64w4s3/s{split}", dict(base, BN=64, BK=256, SPLIT_K=split, num_warps=4,
                                                num_stages=3)))
    out.append(("bn128w4s3", dict(base, num_warps=4, num_stages=3)))
    return out


def main() -> None:
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    for k, n in SHAPES:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        packs = _copies(lambda: prepack(w), w.nbytes)
        ref_w = w.dequantize(torch.float32)
        for m in (1, 16, 64):
            x = torch.randn(m, k, generator=g, device=dev).bfloat16()
            ref = F.linear(x.float(), ref_w)
            line = []
            for name, cfg in variants(m, n, packs[0].codes.shape[1] * 2):
                try:
                    y = kl.linear(x, packs[0], None, cfg).float()
                    err = ((y - ref).norm() / ref.norm()).item()
                    assert err < 1e-2, err
                    us = graph_time_us([lambda i=i: kl.linear(x, packs[i], None, cfg)
                                        for i in range(len(packs))])
                    line.append(f"{name} {us:.1f}")
                except Exception as e:
                    line.append(f"{name} fail {type(e).__name__}: {str(e)[:80]}")
            print(f"{k}->{n} M={m}: " + " | ".join(line), flush=True)
        del packs


if __name__ == "__main__":
    main()
