"""`mxfp4 bench quantize`: throughput of quantize and dequantize on one large tensor."""

from __future__ import annotations

import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from ..ops import dequantize, quantize
from .record import environment, write_results

COLUMNS = ["op", "scale_rule", "dtype", "backend", "shape", "median_ms", "M_elements_per_s"]


def _median_seconds(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args) -> int:
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator(device=args.device).manual_seed(0)
    x = torch.randn(args.size, args.size, generator=gen, device=args.device).to(dtype)
    rows = []
    for rule in args.rules:
        q = quantize(x, scale_rule=rule, backend=args.backend)
        for op, fn in (("quantize", lambda: quantize(x, scale_rule=rule, backend=args.backend)),
                       ("dequantize", lambda: dequantize(q, dtype, backend=args.backend))):
            sec = _median_seconds(fn, args.repeats, args.device)
            rows.append({"op": op, "scale_rule": rule, "dtype": args.dtype, "backend": args.backend,
                         "shape": f"{args.size}x{args.size}", "median_ms": sec * 1e3,
                         "M_elements_per_s": x.numel() / sec / 1e6})
    table = Table(title=f"mxfp4 codec on {args.device}")
    for c in COLUMNS:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in COLUMNS))
    Console().print(table)
    if args.out:
        env = environment(args.device)
        paths = write_results(args.out, f"codec-{args.device.split(':')[0]}",
                              f"Codec throughput ({args.device})", env, COLUMNS, rows,
                              notes=f"Command: `mxfp4 bench quantize --device {args.device} "
                                    f"--size {args.size} --dtype {args.dtype}`. Median of "
                                    f"{args.repeats} runs after one warm-up.")
        print("wrote", *paths)
    return 0


def add_arguments(p) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--size", type=int, default=4096, help="side of the square tensor")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="element type of the tensor")
    p.add_argument("--rules", nargs="+", default=["floor", "ceil"], help="scale rules to time")
    p.add_argument("--backend", default="auto", help="auto, triton or reference")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed runs after one warm-up; the median is reported")
