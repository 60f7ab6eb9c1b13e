"""`mxfp4 bench SUITE`: each suite module has add_arguments(parser) and run(args) -> int.

Every suite writes its results to `--out`, by default the folder bench-SUITE in the current
directory (never a source tree's docs/ unless asked), and checks that folder before it starts.
"""

from __future__ import annotations

import argparse
import functools
import importlib

from .record import check_out_dir

SUITES = {
    "quantize": ("mxfp4.bench.codec", "throughput of quantize/dequantize (reference or kernel)"),
    "kernels": ("mxfp4.bench.kernels", "Triton quantize/dequantize and linear vs cuBLAS bf16, CUDA graphs (GPU)"),
    "moe": ("mxfp4.bench.moe", "GPT-OSS MoE layer with MXFP4 experts, CUDA graphs (--stack gpt-oss-120b)"),
    "model": ("mxfp4.bench.model", "whole GPT-OSS model (random weights, real shapes): decode, "
              "prefill, floor, vs transformers (GPU)"),
}


def _run(suite_run, args) -> int:
    if args.out:  # a bad folder fails now, not after minutes of timing
        check_out_dir(args.out)
    return suite_run(args)


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite and record its results")
    suites = p.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name, (module, help_text) in SUITES.items():
        mod = importlib.import_module(module)
        sp = suites.add_parser(name, help=help_text, description=help_text,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(sp)
        sp.add_argument("--out", default=f"bench-{name}",
                        help="folder for the results as JSON + markdown, created if missing "
                             "('' to skip)")
        sp.set_defaults(func=functools.partial(_run, mod.run))
