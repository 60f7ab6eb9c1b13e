"""On a GPU: does a K-panel byte order of the packed weight make the M = 1 GEMV faster?

The HopperWeight codes [Np, Kp/2] are row-major: a 16-row step tile of the GEMV spans 16 rows
of Kp/2 bytes (112 KB at K = 14336). In a K-panel order the bytes of PANEL 64-groups of every
row lie together ([panel][row][PANEL x 32 bytes]), so the same tile spans 16 x PANEL x 32
bytes. Each variant is checked against float64 first, then all are timed interleaved.
Run: PYTHONPATH=src python3 benchmarks/panel_probe.py [PANEL ...]   (default 4 8 16 32)
"""

import dataclasses
import sys

import torch

import mxfp4
from mxfp4.bench.kernels import _copies, floor_us, graph_times_us
from mxfp4.kernels import linear as kl
from mxfp4.kernels.mma_gemv import mma_gemv_config
from mxfp4.layouts import prepack

SHAPES = [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]


def paneled(hw, panel: int):
    """The same HopperWeight with its codes in K-panel order (panel 64-groups per panel)."""
    c = hw.codes
    flat = torch.cat([p.contiguous().flatten() for p in c.split(panel * 32, dim=1)])
    return dataclasses.replace(hw, codes=flat.view(c.shape))


def main(panels, interpret=False):
    dev = torch.device("cpu" if interpret else "cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    shapes = [(256, 64), (448, 128), (2880, 64)] if interpret else SHAPES
    sms = 132 if interpret else torch.cuda.get_device_properties(dev).multi_processor_count
    for k, n in shapes:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        x = torch.randn(1, k, generator=g, device=dev).bfloat16()
        ref = x.double() @ mxfp4.dequantize(w).double().T
        base = mma_gemv_config(1, n, prepack(w).codes.shape[1] * 2, sms)
        for p in panels:
            y = kl.linear(x, paneled(prepack(w), p), config=dict(base, PANEL=p))
            err = ((y.double() - ref).norm() / ref.norm()).item()
            assert err < 1e-2, (k, n, p, err)
        if interpret:
            print(f"{k}->{n}: panels {panels} agree with float64")
            continue
        ws = _copies(lambda: prepack(w), w.nbytes)
        calls = [[lambda i=i: kl.linear(x, ws[i], config=base) for i in range(len(ws))]]
        for p in panels:
            wp = [paneled(h, p) for h in ws]
            calls.append([lambda i=i, h=wp, c=dict(base, PANEL=p): kl.linear(x, h[i], config=c)
                          for i in range(len(ws))])
        ts = graph_times_us(calls)
        print(f"{k}->{n} M=1 ({base['ROW_TILES']}x{base['K_WARPS']} warps, split {base['SPLIT_K']}, "
              f"floor {floor_us(n * k * 4.25 / 8):.1f}): rows {ts[0]:.2f} us | "
              + " | ".join(f"panel {p} {t:.2f}" for p, t in zip(panels, ts[1:])), flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--interpret"]
    main([int(a) for a in args] or [4, 8, 16, 32], interpret="--interpret" in sys.argv)
