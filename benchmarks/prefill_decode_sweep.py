"""On a GPU: time the bf16 decode of the prefill path alone (HopperWeight tiles vs the plain
MXTensor dequantize kernel vs a bf16 copy of the same output size). Prints a table.
Run: PYTHONPATH=src python3 benchmarks/prefill_decode_sweep.py
"""

import torch

import mxfp4
from mxfp4.bench.kernels import _copies, graph_time_us
from mxfp4.kernels import prefill
from mxfp4.layouts import prepack

TILES = [t + (walk,) for walk in (False, True)
         for t in [(16, 8, 4), (8, 16, 4), (32, 4, 4), (16, 8, 8), (4, 32, 4), (16, 4, 4),
                   (64, 2, 8), (2, 32, 4)]]  # (rows, groups, warps, row-major walk)


def main() -> None:
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    for k, n in [(4096, 14336), (14336, 4096)]:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        packs = _copies(lambda: prepack(w), w.nbytes)
        plains = _copies(lambda: w._with(w.codes.clone(), w.scales.clone()), w.nbytes)
        ref = w.dequantize(torch.bfloat16)
        floor = (w.nbytes + ref.nbytes) / 3.03e12 * 1e6
        copy = graph_time_us([lambda: ref.clone()])
        plain = graph_time_us([lambda i=i: prefill.weight_bf16(plains[i]) for i in range(len(plains))])
        print(f"{k}->{n}: floor {floor:.1f} us, bf16 clone {copy:.1f} us, MXTensor dequantize {plain:.1f} us")
        for tile in TILES:
            try:
                assert torch.equal(prefill.weight_bf16(packs[0], tile), ref)
                us = graph_time_us([lambda i=i: prefill.weight_bf16(packs[i], tile)
                                    for i in range(len(packs))])
                print(f"  hopper tile {tile}: {us:.1f} us", flush=True)
            except Exception as err:
                print(f"  hopper tile {tile}: failed {type(err).__name__}: {str(err)[:100]}")
        del packs, plains


if __name__ == "__main__":
    main()
