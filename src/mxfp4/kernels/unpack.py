"""In-register MXFP4 decoding helpers for Triton kernels (@triton.jit, import and call).

Reference twins: `mxfp4.format.e2m1_table` (code values) and `mxfp4.format.e8m0_to_float32`
(scale bytes). Every E2M1 value times a power-of-two scale is exact in bfloat16 and float32,
so decoding never rounds; only float16 outputs can overflow or lose subnormals.

`unpack_scaled_bf16(packed, s_lo, s_hi)` is the fast path for plain MXTensor bytes in GEMMs:
one byte holds two codes (low nibble first); it returns both as bfloat16 tensors of the byte
tensor's shape, times per-element bf16 scales. On the GPU it runs
four bytes per PTX snippet (prmt + shifts + one bf16x2 fma per pair, one more bf16x2 multiply
per pair for the scale); under TRITON_INTERPRET=1 (which stores bf16 as raw uint16 and cannot
do bf16 arithmetic) the same values come from integer ops and float32 math.
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
# bf16 per register (the unscaled decode; _UNPACK_SCALED_ASM adds the scale). A code's magnitude bits go to bf16 bits 6..8 (exponent low bits and
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


# Same as _UNPACK_ASM, then each bf16x2 pair times its scales: $5,$6 scale the low nibbles,
# $7,$8 the high ones (bf16 powers of two, so the product is exact unless it overflows).
_UNPACK_SCALED_ASM = tl.constexpr(_UNPACK_ASM.value.replace(
    "fma.rn.bf16x2 $0, t, k, z;", "fma.rn.bf16x2 t, t, k, z;\nfma.rn.bf16x2 $0, t, $5, z;").replace(
    "fma.rn.bf16x2 $1, t, k, z;", "fma.rn.bf16x2 t, t, k, z;\nfma.rn.bf16x2 $1, t, $6, z;").replace(
    "fma.rn.bf16x2 $2, t, k, z;", "fma.rn.bf16x2 t, t, k, z;\nfma.rn.bf16x2 $2, t, $7, z;").replace(
    "fma.rn.bf16x2 $3, t, k, z;", "fma.rn.bf16x2 t, t, k, z;\nfma.rn.bf16x2 $3, t, $8, z;"))


@triton.jit
def e8m0_to_bf16(scales):
    """bfloat16 value 2^(s-127) of E8M0 bytes (exact; 0 -> subnormal 2^-127, 255 -> NaN)."""
    s = scales.to(tl.int16) & 255
    bits = tl.where(s > 0, s << 7, 0x40).to(tl.int16)
    return tl.where(s == 255, 0x7FC0, bits).to(tl.int16).to(tl.bfloat16, bitcast=True)


@triton.jit
def unpack_scaled_bf16(packed, s_lo, s_hi):
    """(low, high) nibbles of uint8 bytes as bf16 values times bf16 scales of the same shape."""
    if INTERPRET:
        b = packed.to(tl.int16)
        lo = (e2m1_to_bf16(b).to(tl.float32) * s_lo.to(tl.float32)).to(tl.bfloat16)
        hi = (e2m1_to_bf16(b >> 4).to(tl.float32) * s_hi.to(tl.float32)).to(tl.bfloat16)
    else:
        lo, hi = tl.inline_asm_elementwise(
            _UNPACK_SCALED_ASM, "=r,=r,=r,=r,r,r,r,r,r", [packed, s_lo, s_hi],
            dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=4)
    return lo, hi


@triton.jit
def dot_bf16(a, b, acc):
    """acc + a @ b for bf16 tiles with fp32 accumulation (the interpreter multiplies in fp32,
    since it keeps bf16 as raw uint16; bf16 products are exact in fp32 either way)."""
    if INTERPRET:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
    else:
        acc = tl.dot(a, b, acc)
    return acc


# The kernel layout of mxfp4.layouts.HopperWeight stores a byte's high-nibble code rotated,
# (magnitude << 1) | sign, so that both nibbles of two bytes decode with one prmt, two shifts
# and one lop3 per bf16x2 pair: with b0, b1 moved to bits 8-15 and 24-31 (a), the low codes'
# magnitude bits sit at (a >> 2) bits 6-8 / 22-24 and their signs at (a << 4) bits 15 / 31,
# and the rotated high codes' at (a >> 7) and (a << 3); (t | u) & 0x81C081C0 keeps only those.
# Two bytes in $2 (pack=2) -> $0 = low values, $1 = high values, each times its scale pair.
_HOPPER_ASM = tl.constexpr("""
{
.reg .b32 a, t, u, k, z;
mov.b32 k, 0x7E807E80;
mov.b32 z, 0x80008000;
prmt.b32 a, $2, 0, 0x1404;
shr.b32 t, a, 2;
shl.b32 u, a, 4;
lop3.b32 t, t, u, 0x81C081C0, 0xA8;
fma.rn.bf16x2 t, t, k, z;
fma.rn.bf16x2 $0, t, $3, z;
shr.b32 t, a, 7;
shl.b32 u, a, 3;
lop3.b32 t, t, u, 0x81C081C0, 0xA8;
fma.rn.bf16x2 t, t, k, z;
fma.rn.bf16x2 $1, t, $4, z;
}
""")


@triton.jit
def rotate_nibble(code):
    """E2M1 code -> its rotated storage form (magnitude << 1) | sign, and back with unrotate."""
    return ((code & 7) << 1) | ((code >> 3) & 1)


@triton.jit
def unrotate_nibble(stored):
    return ((stored >> 1) & 7) | ((stored & 1) << 3)


@triton.jit
def unpack_hopper_bf16(packed, s_lo, s_hi):
    """HopperWeight bytes (low nibble a code, high nibble a rotated code) -> (low, high) bf16
    values times bf16 scales of the same shape."""
    if INTERPRET:
        b = packed.to(tl.int16)
        lo = (e2m1_to_bf16(b).to(tl.float32) * s_lo.to(tl.float32)).to(tl.bfloat16)
        hi = e2m1_to_bf16(unrotate_nibble(b >> 4)).to(tl.float32)
        hi = (hi * s_hi.to(tl.float32)).to(tl.bfloat16)
    else:
        lo, hi = tl.inline_asm_elementwise(
            _HOPPER_ASM, "=r,=r,r,r,r", [packed, s_lo, s_hi],
            dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=2)
    return lo, hi


# Same decode, one multiply: when every scale byte is <= 128 the factor 2^126 * 2^(s-127) =
# 2^(s-1) is a normal bf16, so $3/$4 carry 2^(s-1) (bits (s + 126) << 7) and one fma per pair
# both undoes the subnormal placement and applies the scale.
def fused_decode_ptx(src: str, selector: str, out_lo: str, out_hi: str, f_lo: str,
                     f_hi: str, prescale: str | None = None) -> str:
    """PTX lines of the fused decode of two HopperWeight bytes of register `src` (picked by the
    prmt selector: 0x1404 for bytes 0, 1 and 0x3424 for bytes 2, 3) into the bf16x2 registers
    out_lo (low codes times f_lo) and out_hi (high codes times f_hi); uses a, t, u, z.
    prescale: a register of 2^126 pairs to multiply by first (then f is 2^(s-127): any scale
    byte), None for the one-fma form (f = 2^(s-1), bytes <= 128)."""
    pre = f"fma.rn.bf16x2 t, t, {prescale}, z;\n" if prescale else ""
    return f"""prmt.b32 a, {src}, 0, {selector};
shr.b32 t, a, 2;
shl.b32 u, a, 4;
lop3.b32 t, t, u, 0x81C081C0, 0xA8;
{pre}fma.rn.bf16x2 {out_lo}, t, {f_lo}, z;
shr.b32 t, a, 7;
shl.b32 u, a, 3;
lop3.b32 t, t, u, 0x81C081C0, 0xA8;
{pre}fma.rn.bf16x2 {out_hi}, t, {f_hi}, z;
"""


def fused_decode_asm(*snippets: str) -> tl.constexpr:
    """A PTX block around fused_decode_ptx snippets (declares their scratch registers)."""
    return tl.constexpr("\n{\n.reg .b32 a, t, u, z;\nmov.b32 z, 0x80008000;\n"
                        + "".join(snippets) + "}\n")


_HOPPER_FUSED_ASM = fused_decode_asm(fused_decode_ptx("$2", "0x1404", "$0", "$1", "$3", "$4"))


def word_decode_asm(fused: bool) -> str:
    """PTX of the decode of one 32-bit word of HopperWeight codes ($4: bytes 4w..4w+3 of a
    group, whose low nibbles are elements 4w.. and high nibbles 32 + 4w..) into four bf16x2
    registers: $0 / $2 the low codes of bytes 0-1 / 2-3, $1 / $3 the high ones, times the
    factors $5 (low block) / $6 (high block), each a bf16 pair: 2^(s-1) when fused (bytes
    <= 128), else 2^(s-127) after a first multiply by 2^126. The warp-specialized GEMM's
    decoder (kernels/ws_decode.py) runs it; tests/test_ws_decode_asm.py executes it on the CPU."""
    pre = None if fused else "k"
    body = "".join(fused_decode_ptx("$4", sel, lo, hi, "$5", "$6", pre)
                   for sel, lo, hi in (("0x1404", "$0", "$1"), ("0x3424", "$2", "$3")))
    return ("\n{\n.reg .b32 a, t, u, k, z;\nmov.b32 z, 0x80008000;\nmov.b32 k, 0x7E807E80;\n"
            + body + "}\n")


def halfword_decode_asm(fused: bool) -> str:
    """PTX: two registers holding a HopperWeight halfword each ($4, $5: bytes 2j, 2j + 1 in
    their low 16 bits) -> four bf16x2 registers: $0 / $1 the low / high codes of $4, $2 / $3
    those of $5, times the factor pairs $6 (low codes' block) / $7 (high codes' block), as
    word_decode_asm. The register-operand GEMM's decode (kernels/rs_gemm_kernel.py);
    tests/test_ws_decode_asm.py executes it on the CPU."""
    pre = None if fused else "k"
    body = (fused_decode_ptx("$4", "0x1404", "$0", "$1", "$6", "$7", pre)
            + fused_decode_ptx("$5", "0x1404", "$2", "$3", "$6", "$7", pre))
    return ("\n{\n.reg .b32 a, t, u, k, z;\nmov.b32 z, 0x80008000;\nmov.b32 k, 0x7E807E80;\n"
            + body + "}\n")


@triton.jit
def e8m0_times_2p126_bf16(scales):
    """bf16 2^(s-1) = 2^126 * 2^(s-127) for E8M0 bytes s <= 128 (the fused decode's factor)."""
    return ((scales.to(tl.int16) + 126) << 7).to(tl.bfloat16, bitcast=True)


@triton.jit
def unpack_hopper_fused_bf16(packed, m_lo, m_hi):
    """Like unpack_hopper_bf16 with factors m = e8m0_times_2p126_bf16(s) (all s <= 128)."""
    if INTERPRET:
        b = packed.to(tl.int16)
        unit = 1.1754943508222875e-38  # 2^-126: m * 2^-126 is the scale
        lo = (e2m1_to_bf16(b).to(tl.float32) * (m_lo.to(tl.float32) * unit)).to(tl.bfloat16)
        hi = e2m1_to_bf16(unrotate_nibble(b >> 4)).to(tl.float32)
        hi = (hi * (m_hi.to(tl.float32) * unit)).to(tl.bfloat16)
    else:
        lo, hi = tl.inline_asm_elementwise(
            _HOPPER_FUSED_ASM, "=r,=r,r,r,r", [packed, m_lo, m_hi],
            dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=2)
    return lo, hi


@triton.jit
def load_mx_tile(code_rows, scale_rows, k0, KP, R: tl.constexpr, BK: tl.constexpr,
                 BS: tl.constexpr, SB: tl.constexpr, MASK_K: tl.constexpr):
    """bf16 [R, BK] tile of a plain MXTensor quantized along K (codes [., KP/2], scales [., KP/BS]).

    code_rows / scale_rows: [R, 1] pointers to the rows' first code byte and first scale byte.
    Elements k0 .. k0 + BK - 1 (k0 a multiple of min(BS, BK)); with MASK_K, those at k >= KP
    read as zero. SB = min(BS, BK): the tile holds BK / SB runs of SB elements, one scale each.
    """
    jb = tl.arange(0, BK // 2)
    t = tl.arange(0, BK // SB)
    if MASK_K:
        packed = tl.load(code_rows + (k0 // 2 + jb)[None, :],
                         mask=(k0 + 2 * jb < KP)[None, :], other=0)
        s = tl.load(scale_rows + ((k0 + SB * t) // BS)[None, :],
                    mask=(k0 + SB * t < KP)[None, :], other=127)
    else:
        packed = tl.load(code_rows + (k0 // 2 + jb)[None, :])
        s = tl.load(scale_rows + ((k0 + SB * t) // BS)[None, :])
    s = e8m0_to_bf16(s)
    s = tl.broadcast_to(s[:, :, None], (R, BK // SB, SB // 2)).reshape(R, BK // 2)
    if BS == 32 and not MASK_K:  # the fast path (packed PTX decode)
        lo, hi = unpack_scaled_bf16(packed, s, s)
    else:  # other block sizes and ragged K: plain integer decode, fp32 scaling
        b = packed.to(tl.int16)
        lo = (e2m1_to_bf16(b).to(tl.float32) * s.to(tl.float32)).to(tl.bfloat16)
        hi = (e2m1_to_bf16(b >> 4).to(tl.float32) * s.to(tl.float32)).to(tl.bfloat16)
    return tl.join(lo, hi).reshape(R, BK)


@triton.jit
def grouped_tile(pid, tiles_a, tiles_b, GROUP: tl.constexpr):
    """(a, b) tile indices of program pid when groups of GROUP a-tiles sweep all b-tiles, so
    that the group's a operand stays in L2 while the b tiles stream past it."""
    per_group = GROUP * tiles_b
    first = (pid // per_group) * GROUP
    size = tl.minimum(tiles_a - first, GROUP)
    return first + (pid % per_group) % size, (pid % per_group) // size


@triton.jit
def dot_x(w, x, acc, X_SPLIT: tl.constexpr, SWAP: tl.constexpr = True):
    """acc + w @ x (SWAP: w [BN, k], x [k, BM]) or acc + x @ w.T (x [BM, k]) on bf16 tensor
    cores; fp16/fp32 x is split into two bf16 terms (x = hi + lo) so no mantissa bit is lost."""
    xh = x.to(tl.bfloat16)
    if SWAP:
        acc = dot_bf16(w, xh, acc)
    else:
        acc = dot_bf16(xh, tl.trans(w), acc)
    if X_SPLIT:
        xl = (x.to(tl.float32) - xh.to(tl.float32)).to(tl.bfloat16)
        if SWAP:
            acc = dot_bf16(w, xl, acc)
        else:
            acc = dot_bf16(xl, tl.trans(w), acc)
    return acc


@triton.jit
def hopper_dot(acc, w_rows, s_cols, x_cols, x_ok, k_start, k_stop, K, NP,
               FUSED: tl.constexpr, X_SPLIT: tl.constexpr, SWAP: tl.constexpr,
               BN: tl.constexpr, BK: tl.constexpr, RAGGED_K: tl.constexpr):
    """acc + W[rows, k_start:k_stop] @ x[:, k_start:k_stop].T for a weight in the HopperWeight
    layout (acc [BN, BM] with SWAP, else [BM, BN]).

    w_rows [BN, 1]: pointers to the tile rows' first code byte (rows of KP/2 bytes);
    s_cols [1, BN]: pointers to the rows' first scale byte (scales transposed, rows of NP);
    x_cols [1, BM]: pointers to the activation rows, read where x_ok [BM] and k < K (checked
    only with RAGGED_K, K not a multiple of 64: else the padded K is K, and the check would
    cost ~5 % of the loop's instructions).
    k_start and k_stop are multiples of 64: whole BK steps first, then the rest (K = 2880 is
    45 groups of 64, which no larger power of two divides) in steps of 64. FUSED: every scale
    byte is <= 128, so decode and scale take one multiply (unpack_hopper_fused_bf16).
    """
    k_main = k_start + (k_stop - k_start) // BK * BK
    for k0 in range(k_start, k_main, BK):
        acc = _hopper_step(acc, w_rows, s_cols, x_cols, x_ok, k0, K, NP, FUSED, X_SPLIT, SWAP,
                           BN, BK, RAGGED_K)
    if BK > 64:
        for k0 in range(k_main, k_stop, 64):
            acc = _hopper_step(acc, w_rows, s_cols, x_cols, x_ok, k0, K, NP, FUSED, X_SPLIT, SWAP,
                               BN, 64, RAGGED_K)
    return acc


@triton.jit
def _hopper_step(acc, w_rows, s_cols, x_cols, x_ok, k0, K, NP, FUSED: tl.constexpr,
                 X_SPLIT: tl.constexpr, SWAP: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                 RAGGED_K: tl.constexpr):
    """One [BN, BK] weight tile of hopper_dot, from element k0 on."""
    jb = tl.arange(0, BK // 2)  # byte within the tile row
    kb = tl.arange(0, BK // 32)  # scale block within the tile (blocks of 32)
    k_lo = (jb // 32) * 64 + jb % 32  # byte j of a 64-group: elements j and 32 + j
    packed = tl.load(w_rows + (k0 // 2 + jb)[None, :])
    sc = tl.load(s_cols + (k0 // 32 + kb).to(tl.int64)[:, None] * NP)
    if FUSED:
        sc = e8m0_times_2p126_bf16(sc)
    else:
        sc = e8m0_to_bf16(sc)
    s_lo, s_hi = tl.split(tl.trans(sc).reshape(BN, BK // 64, 2))
    s_lo = tl.broadcast_to(s_lo[:, :, None], (BN, BK // 64, 32)).reshape(BN, BK // 2)
    s_hi = tl.broadcast_to(s_hi[:, :, None], (BN, BK // 64, 32)).reshape(BN, BK // 2)
    if FUSED:
        w_lo, w_hi = unpack_hopper_fused_bf16(packed, s_lo, s_hi)
    else:
        w_lo, w_hi = unpack_hopper_bf16(packed, s_lo, s_hi)
    ok_lo = (k0 + k_lo < K) | (not RAGGED_K)  # constant true (folded away) unless RAGGED_K
    ok_hi = (k0 + k_lo + 32 < K) | (not RAGGED_K)
    if SWAP:
        x_lo = tl.load(x_cols + (k0 + k_lo)[:, None], mask=x_ok[None, :] & ok_lo[:, None],
                       other=0.0)
        x_hi = tl.load(x_cols + (k0 + k_lo + 32)[:, None], mask=x_ok[None, :] & ok_hi[:, None],
                       other=0.0)
    else:
        x_lo = tl.load(tl.trans(x_cols) + (k0 + k_lo)[None, :],
                       mask=x_ok[:, None] & ok_lo[None, :], other=0.0)
        x_hi = tl.load(tl.trans(x_cols) + (k0 + k_lo + 32)[None, :],
                       mask=x_ok[:, None] & ok_hi[None, :], other=0.0)
    acc = dot_x(w_lo, x_lo, acc, X_SPLIT, SWAP)
    return dot_x(w_hi, x_hi, acc, X_SPLIT, SWAP)
