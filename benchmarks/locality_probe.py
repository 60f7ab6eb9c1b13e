"""On a GPU: does the byte order of packed weights change how fast they stream from DRAM?

Reads a 4-bit weight [N, K] (N x K/2 bytes) in the decode kernels' step tiles (64 rows x 128
bytes), either from the row-major layout (64 runs of 128 bytes, one per row, 2 KB apart for
K = 4096) or from a tile-major copy where each step tile is one contiguous 8 KB run; a torch
copy of the same bytes for scale (its rate counts the bytes read and written).
Run: PYTHONPATH=src python3 benchmarks/locality_probe.py [KxN ...]
     (default: the dense benchmark shapes; 3072x737280 is a 1.1 GB stack of 128 MoE W1s)
"""

import sys

import torch
import triton
import triton.language as tl

from mxfp4.bench.kernels import graph_times_us


@triton.jit
def _read_kernel(w_ptr, out_ptr, ROW_BYTES, STEPS, TILED: tl.constexpr, LOOP: tl.constexpr):
    nb = tl.program_id(0)
    r = tl.arange(0, 64)[:, None]
    j = tl.arange(0, 128)[None, :]
    acc = tl.zeros((64, 128), dtype=tl.int32)
    for s in tl.range(0, STEPS if LOOP else 1, num_stages=3):
        step = s if LOOP else tl.program_id(1)
        if TILED:
            off = (nb.to(tl.int64) * STEPS + step) * 8192 + r * 128 + j
        else:
            off = (nb.to(tl.int64) * 64 + r) * ROW_BYTES + step * 128 + j
        acc += tl.load(w_ptr + off).to(tl.int32)
    tl.store(out_ptr + nb * tl.num_programs(1) + tl.program_id(1), tl.sum(acc))


def main(shapes) -> None:
    dev = torch.device("cuda")
    for k, n in shapes:
        nbytes = n * k // 2
        copies = max(2, int(600e6 // nbytes) + 1)
        ws = [torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=dev) for _ in range(copies)]
        steps = k // 256
        out = torch.empty(n // 64 * steps, dtype=torch.int32, device=dev)
        lists, names = [], []
        for tiled in (False, True):
            for loop in (False, True):
                grid = (n // 64, 1 if loop else steps)
                lists.append([lambda i=i, g=grid, t=tiled, lp=loop: _read_kernel[g](
                    ws[i], out, k // 2, steps, TILED=t, LOOP=lp, num_warps=4) for i in range(copies)])
                names.append(f"{'tiled' if tiled else 'rows'}/{'loop' if loop else 'one-tile'}")
        dst = torch.empty_like(ws[0])
        lists.append([lambda i=i: dst.copy_(ws[i]) for i in range(copies)])
        names.append("torch copy (2x bytes)")
        times = graph_times_us(lists)
        print(f"{k}x{n} ({nbytes / 1e6:.0f} MB, floor {nbytes / 3.03e6:.1f} us): " + " | ".join(
            f"{nm} {t:.1f} us ({nbytes * (2 if 'copy' in nm else 1) / t / 1e6:.2f} TB/s)"
            for nm, t in zip(names, times)), flush=True)


if __name__ == "__main__":
    main([tuple(int(v) for v in a.split("x")) for a in sys.argv[1:]]
         or [(4096, 14336), (14336, 4096), (2880 + 192, 5760)])
