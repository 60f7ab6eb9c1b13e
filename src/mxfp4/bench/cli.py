"""`mxfp4 bench SUITE`: each suite module has add_arguments(parser) and run(args) -> int."""

from __future__ import annotations

import importlib

SUITES = {
    "quantize": ("mxfp4.bench.codec", "throughput of quantize/dequantize (reference or kernel)"),
    "kernels": ("mxfp4.bench.kernels", "Triton quantize/dequantize and linear vs cuBLAS bf16, CUDA graphs (GPU)"),
    "moe": ("mxfp4.bench.moe", "GPT-OSS MoE layer with MXFP4 experts, CUDA graphs (--stack gpt-oss-120b)"),
}


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite and record its results")
    suites = p.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name, (module, help_text) in SUITES.items():
        mod = importlib.import_module(module)
        sp = suites.add_parser(name, help=help_text)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
