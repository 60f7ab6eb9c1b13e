"""The visualizer's computations on the library: the format, one block, the value space, scale rules.

Every function takes checked Python values and returns a JSON-ready dict. All numbers come from
mxfp4.format / codec / ops / analysis, so the page shows exactly what the library does.
"""

from __future__ import annotations

import math

import torch

from ..analysis import error_stats
from ..codec import RNE_BOUNDARIES, ROUNDINGS, SCALE_RULES
from ..demo import EXAMPLE
from ..format import (
    BLOCK_SIZE,
    E2M1_CODES,
    E2M1_EMAX,
    E2M1_MAX,
    E8M0_BIAS,
    E8M0_NAN,
    SCALE_EXP_MAX,
    SCALE_EXP_MIN,
    e8m0_to_float32,
    e8m0_value,
)
from ..ops import quantize

MAX_BLOCK_VALUES = BLOCK_SIZE  # the block quantizer shows one block
BF16_BITS = 16
CODE_BITS = 4
SCALE_BITS = 8
DISTRIBUTIONS = ("normal", "laplace", "student_t", "outliers")


def unpack_codes(packed: torch.Tensor) -> torch.Tensor:
    """4-bit codes from packed bytes along the last axis: element 2i is the low nibble (OCP)."""
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).flatten(-2)


def finite_or_none(x: float):
    """JSON has no inf/NaN: send None and let the page say 'exact' or 'n/a'."""
    return x if math.isfinite(x) else None


def format_info() -> dict:
    """The value table, bit fields, constants and option names: the page's only source for them."""
    codes = [{"code": c.code, "bits": c.bits, "sign": c.sign, "exponent": c.exponent,
              "exponent_bits": format(c.exponent, "02b"), "mantissa": c.mantissa,
              "value": c.value, "negative_zero": c.code == 8, "subnormal": c.subnormal}
             for c in E2M1_CODES]
    return {
        "codes": codes,
        "block_size": BLOCK_SIZE,
        "e2m1_max": E2M1_MAX,
        "e2m1_emax": E2M1_EMAX,
        "e8m0_bias": E8M0_BIAS,
        "e8m0_nan": E8M0_NAN,
        "scale_exp_min": SCALE_EXP_MIN,
        "scale_exp_max": SCALE_EXP_MAX,
        "rne_boundaries": list(RNE_BOUNDARIES),
        "scale_rules": list(SCALE_RULES),
        "roundings": list(ROUNDINGS),
        "distributions": list(DISTRIBUTIONS),
        "example": list(EXAMPLE),
        "max_block_values": MAX_BLOCK_VALUES,
        "bits": {"bf16": BF16_BITS, "code": CODE_BITS, "scale": SCALE_BITS},
    }


def scale_info(byte: int) -> dict:
    return {"byte": byte, "bits": format(byte, "08b"), "hex": f"0x{byte:02X}",
            "exponent": None if byte == E8M0_NAN else byte - E8M0_BIAS,
            "value": finite_or_none(e8m0_value(byte))}


def compression(n: int) -> dict:
    """Bits of n BF16 values against n E2M1 codes plus one E8M0 scale (from the real bit counts)."""
    before, after = n * BF16_BITS, n * CODE_BITS + SCALE_BITS
    full_before, full_after = BLOCK_SIZE * BF16_BITS, BLOCK_SIZE * CODE_BITS + SCALE_BITS
    return {"bf16_bits": before, "mxfp4_bits": after, "ratio": before / after,
            "full_block": {"n": BLOCK_SIZE, "bf16_bits": full_before, "mxfp4_bits": full_after,
                           "ratio": full_before / full_after}}


def quantize_block(values: list[float], scale_rule: str = "floor", rounding: str = "nearest",
                   seed: int | None = None) -> dict:
    """One block of up to 32 BF16 values through mxfp4.quantize, element by element."""
    x = torch.tensor(values, dtype=torch.bfloat16)
    q = quantize(x, block_size=BLOCK_SIZE, scale_rule=scale_rule, rounding=rounding, seed=seed)
    codes = unpack_codes(q.codes)[: len(values)].tolist()
    decoded = q.dequantize(torch.float32).tolist()
    byte = int(q.scales[0])
    scale = e8m0_value(byte)
    inputs = x.float().tolist()
    elements = []
    for i, (v, c, d) in enumerate(zip(inputs, codes, decoded)):
        f = E2M1_CODES[c]
        elements.append({"index": i, "given": values[i], "input": v, "scaled": v / scale,
                         "code": c, "bits": f.bits, "sign": f.sign,
                         "exponent_bits": format(f.exponent, "02b"), "mantissa": f.mantissa,
                         "e2m1": f.value, "decoded": d, "error": d - v,
                         "clipped": abs(v) > E2M1_MAX * scale})
    stats = error_stats(x, q)
    return {"scale_rule": scale_rule, "rounding": rounding, "seed": seed,
            "amax": max(abs(v) for v in inputs), "scale": scale_info(byte), "elements": elements,
            "qsnr_db": finite_or_none(stats.qsnr_db), "mse": stats.mse,
            "max_abs_error": stats.max_abs_error, "compression": compression(len(values))}


def mapping(lo: float = -7.5, hi: float = 7.5, points: int = 1201) -> dict:
    """The continuous -> discrete step function at scale 1, and its error.

    Each x is quantized by mxfp4.quantize in a two-element block [x, 6]: with |x| < 8 the floor
    rule then picks exponent 0, so the step function is the library's own rounding at scale 1.
    """
    x = torch.linspace(lo, hi, points, dtype=torch.float32)
    pairs = torch.stack((x, torch.full_like(x, E2M1_MAX)), dim=-1)
    q = quantize(pairs, block_size=2, scale_rule="floor")
    if not bool((q.scales == E8M0_BIAS).all()):
        raise RuntimeError("the anchored blocks did not get scale 1; the mapping would be wrong")
    y = q.dequantize(torch.float32)[:, 0]
    codes = unpack_codes(q.codes)[:, 0]
    return {"x": x.tolist(), "q": y.tolist(), "error": (y - x).tolist(), "codes": codes.tolist(),
            "boundaries": list(RNE_BOUNDARIES), "scale": 1.0}


def sample(distribution: str, n: int, sigma: float, seed: int) -> torch.Tensor:
    """n float32 samples with scale sigma: the test data of the distribution and rules views."""
    gen = torch.Generator().manual_seed(seed)
    if distribution == "normal":
        x = torch.randn(n, generator=gen)
    elif distribution == "laplace":
        u = torch.rand(n, generator=gen).clamp(1e-7, 1 - 1e-7) - 0.5
        x = -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2)  # unit variance
    elif distribution == "student_t":  # 3 degrees of freedom: heavy tails, like many activations
        z = torch.randn(n, generator=gen)
        chi2 = (torch.randn(n, 3, generator=gen) ** 2).sum(-1)
        x = z / torch.sqrt(chi2 / 3)
    else:  # normal weights with one outlier per 1000 at 20 sigma
        x = torch.randn(n, generator=gen)
        idx = torch.randperm(n, generator=gen)[: max(1, n // 1000)]
        x[idx] = 20 * torch.sign(x[idx])
    return x * sigma


def histogram(x: torch.Tensor, lo: float, hi: float, bins: int) -> dict:
    counts = torch.histc(x.float(), bins=bins, min=lo, max=hi)
    return {"lo": lo, "hi": hi, "counts": [int(c) for c in counts.tolist()]}


def _central(x: torch.Tensor) -> float:
    """|x| below which 99.9% of the values lie: the histogram range, so that tails do not squash it."""
    a = x.abs().float()
    if a.numel() > 1 << 20:
        a = a[:: a.numel() // (1 << 20) + 1]
    return max(float(torch.quantile(a, 0.999)), 1e-30)


def exponent_histogram(hist: dict) -> list[dict]:
    return [{"exponent": e, "blocks": n} for e, n in hist.items()]


def distribution(sigma: float = 1.0, block_size: int = BLOCK_SIZE, n: int = 65536, seed: int = 0,
                 scale_rule: str = "floor", dist: str = "normal") -> dict:
    """How N(0, sigma) weights use the 16 codes after block scaling, and the QSNR."""
    x = sample(dist, n, sigma, seed)
    q = quantize(x, block_size=block_size, scale_rule=scale_rule)
    codes = unpack_codes(q.codes)[:n]
    counts = torch.bincount(codes.long(), minlength=16).tolist()
    scaled = x / e8m0_to_float32(q.scales).repeat_interleave(block_size)[:n]
    stats = error_stats(x, q)
    return {"sigma": sigma, "block_size": block_size, "n": n, "seed": seed,
            "scale_rule": scale_rule, "distribution": dist, "code_counts": counts,
            "qsnr_db": finite_or_none(stats.qsnr_db), "mse": stats.mse,
            "clipped_fraction": stats.saturated_fraction,
            "scaled_histogram": histogram(scaled, -8.0, 8.0, 160),
            "input_histogram": histogram(x, -4 * sigma, 4 * sigma, 80),
            "scale_exponents": exponent_histogram(stats.scale_exponents)}


def compare_rules(x: torch.Tensor, block_size: int = BLOCK_SIZE, rounding: str = "nearest",
                  seed: int = 0) -> list[dict]:
    """Each scale rule on the same data: clipped elements, QSNR, errors and the scale histogram."""
    out = []
    for rule in SCALE_RULES:
        q = quantize(x, block_size=block_size, scale_rule=rule, rounding=rounding, seed=seed)
        s = error_stats(x, q)
        out.append({"scale_rule": rule, "qsnr_db": finite_or_none(s.qsnr_db), "mse": s.mse,
                    "clipped_fraction": s.saturated_fraction,
                    "clipped": round(s.saturated_fraction * s.numel),
                    "max_abs_error": s.max_abs_error, "mean_error": s.mean_error,
                    "scale_exponents": exponent_histogram(s.scale_exponents)})
    return out


def rules(dist: str = "normal", sigma: float = 1.0, n: int = 32768, block_size: int = BLOCK_SIZE,
          seed: int = 0, rounding: str = "nearest", values: list[float] | None = None) -> dict:
    x = torch.tensor(values, dtype=torch.float32) if values is not None else sample(dist, n, sigma, seed)
    return {"distribution": "given values" if values is not None else dist, "n": x.numel(),
            "sigma": sigma, "block_size": block_size, "rounding": rounding,
            "input_histogram": histogram(x, -_central(x), _central(x), 80),
            "rules": compare_rules(x, block_size, rounding, seed)}
