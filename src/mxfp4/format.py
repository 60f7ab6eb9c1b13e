"""The MXFP4 number formats: E2M1 elements and E8M0 block scales (OCP MX v1.0).

This module is the single source of truth for the value table, the bit fields
and the scale encoding; everything else in the package derives from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BLOCK_SIZE = 32  # the OCP MX block size
E2M1_MAX = 6.0  # largest E2M1 magnitude
E2M1_EMAX = 2  # exponent of the largest E2M1 value: 6 = 1.5 * 2**2
E8M0_BIAS = 127
E8M0_NAN = 0xFF  # scale byte that marks a block containing NaN or Inf
SCALE_EXP_MIN = -127
SCALE_EXP_MAX = 127

# Magnitudes of codes 0..7; codes 8..15 are their negatives (bit 3 is the sign).
E2M1_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
E2M1_VALUES = E2M1_MAGNITUDES + tuple(-m for m in E2M1_MAGNITUDES)  # code 0x8 is -0.0

# Round-to-nearest-even on magnitudes as "count the boundaries strictly below y".
# A tie that rounds up (to the even mantissa above) uses the float just below the
# midpoint, so that the midpoint itself counts as above it.
_MIDPOINTS = ((0.25, "down"), (0.75, "up"), (1.25, "down"), (1.75, "up"),
              (2.5, "down"), (3.5, "up"), (5.0, "down"))


def _rne_boundaries() -> tuple[float, ...]:
    out = []
    for mid, tie in _MIDPOINTS:
        b = torch.tensor(mid, dtype=torch.float32)
        if tie == "up":
            b = torch.nextafter(b, torch.tensor(0.0))
        out.append(b.item())
    return tuple(out)


RNE_BOUNDARIES = _rne_boundaries()


@dataclass(frozen=True)
class E2M1Code:
    """One 4-bit E2M1 code and its fields."""

    code: int
    sign: int
    exponent: int  # the 2 stored exponent bits
    mantissa: int  # the stored mantissa bit
    value: float

    @property
    def bits(self) -> str:
        return format(self.code, "04b")

    @property
    def subnormal(self) -> bool:
        return self.exponent == 0


def e2m1_code(code: int) -> E2M1Code:
    """Fields of an E2M1 code: value = (-1)^s * 2^(e-1) * (1 + m/2), or (-1)^s * m/2 when e == 0."""
    if not 0 <= code <= 15:
        raise ValueError(f"E2M1 codes are 0..15, got {code}")
    sign, exponent, mantissa = code >> 3, (code >> 1) & 0b11, code & 1
    magnitude = mantissa * 0.5 if exponent == 0 else 2.0 ** (exponent - 1) * (1 + mantissa / 2)
    return E2M1Code(code, sign, exponent, mantissa, -magnitude if sign else magnitude)


E2M1_CODES = tuple(e2m1_code(c) for c in range(16))
assert tuple(c.value for c in E2M1_CODES) == E2M1_VALUES


def e2m1_table(device: torch.device | str | None = None) -> torch.Tensor:
    """The 16 code values as a float32 tensor, indexed by code."""
    return torch.tensor(E2M1_VALUES, dtype=torch.float32, device=device)


def e8m0_value(byte: int) -> float:
    """The value 2^(byte-127) of an E8M0 scale byte; 0xFF is NaN."""
    if not 0 <= byte <= 255:
        raise ValueError(f"E8M0 scale bytes are 0..255, got {byte}")
    return float("nan") if byte == E8M0_NAN else 2.0 ** (byte - E8M0_BIAS)


def e8m0_to_float32(scales: torch.Tensor) -> torch.Tensor:
    """Decode E8M0 scale bytes (uint8) to float32 exactly: 2^(s-127), NaN for 0xFF.

    Built from bits so that byte 0 gives the subnormal 2^-127 exactly.
    """
    s = scales.to(torch.int32)
    bits = torch.where(s > 0, s << 23, torch.full_like(s, 1 << 22))
    bits = torch.where(s == E8M0_NAN, torch.full_like(s, 0x7FC00000), bits)
    return bits.view(torch.float32)


def pow2_float32(exponent: torch.Tensor) -> torch.Tensor:
    """2^exponent as float32 for integer exponents in [-127, 127], exactly."""
    return e8m0_to_float32((exponent + E8M0_BIAS).to(torch.int32))
