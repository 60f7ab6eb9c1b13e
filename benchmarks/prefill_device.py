"""On a GPU: the prefill path of mxfp4.linear (decode W once + cuBLAS) against the fused kernel.

Checks both against float64 math, then times, with CUDA graphs and weights rotated over
> 600 MB, cuBLAS bf16 on the dequantized weight, the fused Triton kernel, the prefill path and
whatever mxfp4.linear dispatches to, for M around the dispatch threshold. Writes
kernels-prefill.{json,md} to the folder given (default docs/benchmarks).
Run: PYTHONPATH=src python3 benchmarks/prefill_device.py [OUT_DIR]
"""

import sys

import torch
import torch.nn.functional as F

import mxfp4
from mxfp4.bench.kernels import _copies, floor_us, graph_time_us
from mxfp4.bench.record import environment, write_results
from mxfp4.kernels import linear as kl
from mxfp4.kernels import prefill
from mxfp4.layouts import prepack

SHAPES = [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]
MS = [256, 512, 1024, 2048, 4096]
COLUMNS = ["shape", "M", "cublas_us", "fused_us", "prefill_us", "linear_us", "linear_vs_cublas",
           "floor_us", "dispatch", "err_fused", "err_prefill"]


def main(out_dir: str) -> None:
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    rows = []
    for k, n in SHAPES:
        w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        packs = _copies(lambda: prepack(w), w.nbytes)
        wd = w.dequantize(torch.bfloat16)
        dense = _copies(lambda: wd.clone(), wd.nbytes)
        bias = torch.randn(n, generator=g, device=dev).to(torch.bfloat16)
        for m in MS:
            xs = _copies(lambda: torch.randn(m, k, generator=g, device=dev).to(torch.bfloat16),
                         m * k * 16)
            cfg = kl.pick_config(m, n, packs[0].codes.shape[1] * 2, sms)
            ref = xs[0].double() @ wd.double().T + bias.double()

            def err(y):
                return ((y.double() - ref).norm() / ref.norm()).item()

            e_fused = err(kl.linear(xs[0], packs[0], bias, cfg))
            e_pre = err(prefill.linear(xs[0], packs[0], bias))
            assert e_fused < 1e-2 and e_pre < 1e-2, (k, n, m, e_fused, e_pre)
            assert torch.equal(prefill.weight_bf16(packs[0]), wd)
            cub = graph_time_us([lambda i=i: F.linear(xs[i % len(xs)], dense[i], bias)
                                 for i in range(len(dense))])
            fused = graph_time_us([lambda i=i: kl.linear(xs[i % len(xs)], packs[i], bias, cfg)
                                   for i in range(len(packs))])
            pre = graph_time_us([lambda i=i: prefill.linear(xs[i % len(xs)], packs[i], bias)
                                 for i in range(len(packs))])
            lin = graph_time_us([lambda i=i: mxfp4.linear(xs[i % len(xs)], packs[i], bias)
                                 for i in range(len(packs))])
            fl = floor_us(n * k * 4.25 / 8 + m * k * 2 + m * n * 2, 2.0 * m * n * k)
            row = dict(shape=f"{k}->{n}", M=m, cublas_us=cub, fused_us=fused, prefill_us=pre,
                       linear_us=lin, linear_vs_cublas=lin / cub, floor_us=fl,
                       dispatch="prefill" if prefill.use_prefill(m, torch.bfloat16) else "fused",
                       err_fused=e_fused, err_prefill=e_pre)
            rows.append(row)
            print(f"{k:>6}->{n:<6} M={m:<5} cuBLAS {cub:8.1f}  fused {fused:8.1f}  prefill {pre:8.1f}"
                  f"  linear {lin:8.1f} ({lin / cub:.2f}x cuBLAS)", flush=True)
            del xs
        del packs, dense
        torch.cuda.empty_cache()
    write_results(out_dir, "kernels-prefill", "mxfp4.linear prefill: decode + cuBLAS vs fused kernel",
                  environment("cuda"), COLUMNS, rows,
                  notes="Command: `PYTHONPATH=src python3 benchmarks/prefill_device.py`. bf16 x, "
                        "HopperWeight weights, bias; medians of CUDA-graph replays, weights rotated "
                        "over > 600 MB. `linear_us` is what mxfp4.linear dispatches to.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks")
