"""`mxfp4 demo`: the seed article's example block, the value table and QSNR per scale rule."""

from __future__ import annotations

import torch
from rich.console import Console
from rich.table import Table

from .analysis import error_stats
from .codec import SCALE_RULES
from .format import E2M1_CODES, e8m0_value
from .ops import quantize

EXAMPLE = (2.5, -1.25, 0.75, 4.0)


def example_block(values=EXAMPLE, scale_rule: str = "floor"):
    """Quantize one block; return (codes per element, scale byte, dequantized values)."""
    x = torch.tensor(values, dtype=torch.bfloat16)
    size = max(2, 1 << (len(values) - 1).bit_length())
    q = quantize(x, block_size=size, scale_rule=scale_rule)
    packed = q.codes.tolist()
    codes = [(packed[i // 2] >> (4 * (i % 2))) & 0xF for i in range(len(values))]
    return codes, int(q.scales[0]), q.dequantize().tolist()


def run(args) -> int:
    console = Console()
    codes, scale, decoded = example_block()
    t = Table(title=f"Seed example block (scale rule floor): scale byte {scale} = {e8m0_value(scale)}")
    for col in ("input (bf16)", "code", "decoded", "error"):
        t.add_column(col, justify="right")
    for x, c, d in zip(EXAMPLE, codes, decoded):
        t.add_row(f"{x:g}", format(c, "04b"), f"{d:g}", f"{d - x:+g}")
    console.print(t)

    t = Table(title="E2M1 codes (sign | exponent | mantissa)")
    for col in ("code", "bits", "sign", "exp", "man", "value"):
        t.add_column(col, justify="right")
    for c in E2M1_CODES:
        t.add_row(f"0x{c.code:X}", c.bits, str(c.sign), format(c.exponent, "02b"), str(c.mantissa),
                  f"{c.value:g}")
    console.print(t)

    x = torch.randn(args.rows, 4096, generator=torch.Generator().manual_seed(0))
    t = Table(title=f"QSNR on N(0,1) data, {x.numel():,} elements, blocks of 32")
    for col in ("scale rule", "QSNR dB", "clipped", "max |err|"):
        t.add_column(col, justify="right")
    for rule in SCALE_RULES:
        s = error_stats(x, scale_rule=rule)
        t.add_row(rule, f"{s.qsnr_db:.2f}", f"{s.saturated_fraction:.3%}", f"{s.max_abs_error:.3f}")
    console.print(t)
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="quantize the seed example and compare scale rules")
    p.add_argument("--rows", type=int, default=256, help="rows of 4096 Gaussian values (default 256)")
    p.set_defaults(func=run)
