"""In-register MXFP4 decoding helpers for Triton kernels (@triton.jit, import and call).

Reference twins: `mxfp4.format.e2m1_table` (code values) and `mxfp4.format.e8m0_to_float32`
(scale bytes). Every E2M1 value times a power-of-two scale is exact in bfloat16 and float32,
so decoding never rounds; only float16 outputs can overflow or lose subnormals.

`unpack_bf16(packed)` is the fast path for GEMMs: one byte holds two codes (low nibble first);
it returns both as bfloat16 tensors of the byte tensor's shape. On the GPU it runs four bytes
per PTX snippet (prmt + shifts + one bf16x2 multiply per pair); under TRITON_INTERPRET=1 the
same values come from plain integer ops.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

# The interpreter cannot run PTX, so the packed-asm decode is chosen at import time.
INTERPRET = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def e2m1_to_f32(codes):
    """float32 value of E2M1 codes (any integer tensor holding 0..15)."""
    c = codes.to(tl.int32) & 15
    mag = c & 7
    # |v| = 2^(E-1) * (1 + m/2) for mag = 2E + m >= 2: float32 bits (mag << 22) + bits(0.5);
    # mag 1 is 0.5 and mag 0 is 0.
    bits = tl.where(mag >= 2, (mag << 22) + 0x3F000000, mag * 0x3F000000)
    return (bits | ((c & 8) << 28)).to(tl.float32, bitcast=True)


@triton.jit
def e2m1_to_bf16(codes):
    """bfloat16 value of E2M1 codes (any integer tensor holding 0..15)."""
    c = codes.to(tl.int16) & 15
    mag = c & 7
    bits = tl.where(mag >= 2, (mag << 6) + 0x3F00, mag * 0x3F00)
    return (bits | ((c & 8) << 12)).to(tl.bfloat16, bitcast=True)


@triton.jit
def e8m0_to_f32(scales):
    """float32 value 2^(s-127) of E8M0 scale bytes; 255 is NaN, 0 is the subnormal 2^-127."""
    s = scales.to(tl.int32) & 255
    bits = tl.where(s > 0, s << 23, 1 << 22)
    bits = tl.where(s == 255, 0x7FC00000, bits)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def unpack_f32(packed):
    """(low, high) nibbles of uint8 bytes as float32 E2M1 values."""
    b = packed.to(tl.int32)
    return e2m1_to_f32(b), e2m1_to_f32(b >> 4)


# Four bytes in $4 -> low-nibble values in $0 ($1) and high-nibble values in $2 ($3), two
# bf16 per register. A code's magnitude bits go to bf16 bits 6..8 (exponent low bits and
# the top mantissa bit) and its sign to bit 15; that bf16 is the value times 2^-126 (E = 0
# lands on a subnormal, which is exactly the E2M1 subnormal), so one multiply by 2^126
# (fma with -0.0 keeps the sign of zero) gives the value.
_UNPACK_ASM = tl.constexpr("""
{
.reg .b32 a, b, t, u, k, z;
mov.b32 k, 0x7E807E80;
mov.b32 z, 0x80008000;
prmt.b32 a, $4, 0, 0x4140;
prmt.b32 b, $4, 0, 0x4342;
shl.b32 t, a, 6;
shl.b32 u, a, 12;
and.b32 t, t, 0x01C001C0;
and.b32 u, u, 0x80008000;
or.b32 t, t, u;
fma.rn.bf16x2 $0, t, k, z;
shl.b32 t, b, 6;
shl.b32 u, b, 12;
and.b32 t, t, 0x01C001C0;
and.b32 u, u, 0x80008000;
or.b32 t, t, u;
fma.rn.bf16x2 $1, t, k, z;
shl.b32 t, a, 2;
shl.b32 u, a, 8;
and.b32 t, t, 0x01C001C0;
and.b32 u, u, 0x80008000;
or.b32 t, t, u;
fma.rn.bf16x2 $2, t, k, z;
shl.b32 t, b, 2;
shl.b32 u, b, 8;
and.b32 t, t, 0x01C001C0;
and.b32 u, u, 0x80008000;
or.b32 t, t, u;
fma.rn.bf16x2 $3, t, k, z;
}
""")


@triton.jit
def unpack_bf16(packed):
    """(low, high) nibbles of uint8 bytes as bfloat16 E2M1 values, unscaled."""
    if INTERPRET:
        b = packed.to(tl.int16)
        lo, hi = e2m1_to_bf16(b), e2m1_to_bf16(b >> 4)
    else:
        lo, hi = tl.inline_asm_elementwise(
            _UNPACK_ASM, "=r,=r,=r,=r,r", [packed], dtype=(tl.bfloat16, tl.bfloat16),
            is_pure=True, pack=4)
    return lo, hi
