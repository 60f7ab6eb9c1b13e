"""The decoders of the warp-specialized MXFP4 GEMM (kernels/ws_gemm_kernel.py, Gluon, triton
3.6), each with a one-tile kernel the device check compares bit for bit with the codec.

- decode_tile: a plain MXTensor's codes [BN, BK/2] (element 2j in the low nibble) and scale
  bytes, through Gluon's fp4_to_fp and one bf16x2 multiply by 2^(s-127) a pair.
- decode_packed_tile: a HopperWeight's (layouts.py: byte j of a 64-element group holds
  elements j and 32 + j, the high code rotated) read as 32-bit words, with the v1 kernels'
  bit trick (kernels/unpack.py): a third fewer instructions a step. The result is bf16 pairs
  as 32-bit words, stored through a 32-bit view of the decoded tile (the same bytes).
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from .unpack import word_decode_asm

# one 32-bit word of HopperWeight codes -> four bf16 pairs (kernels/unpack.py)
WORD_DECODE_ASM = gl.constexpr(word_decode_asm(fused=False))
WORD_DECODE_FUSED_ASM = gl.constexpr(word_decode_asm(fused=True))


@gluon.constexpr_function
def block_layout(BN, BK, warps, per_thread):
    """[BN, BK/32, per_thread]: each thread holds one 32-element scale block, as its 16 code
    bytes (code_layout) or, after fp4_to_fp along the last axis, its 32 bf16 values."""
    blocks = BK // 32
    return gl.BlockedLayout([1, 1, per_thread], [32 // blocks, blocks, 1], [warps, 1, 1], [2, 1, 0])


@gluon.constexpr_function
def code_layout(BN, BK, warps):
    return block_layout(BN, BK, warps, 16)


@gluon.constexpr_function
def value_layout(BN, BK, warps):
    return block_layout(BN, BK, warps, 32)


@gluon.constexpr_function
def code_layout_2d(BN, BK, warps):
    """The same bytes as code_layout, read from shared memory as [BN, BK/2]."""
    blocks = BK // 32
    return gl.BlockedLayout([1, 16], [32 // blocks, blocks], [warps, 1], [1, 0])


@gluon.constexpr_function
def word_layout(BN, BK, warps):
    """[BN, BK/8] 32-bit words of HopperWeight codes, two consecutive words of a row per
    thread: they decode to 8 elements of each of the step's two scale blocks."""
    return gl.BlockedLayout([1, 2], [32 // (BK // 16), BK // 16], [warps, 1], [1, 0])


@gluon.jit
def _e8m0_to_bf16(s):
    """bf16 2^(s-127) of E8M0 bytes (exact: 0 is the subnormal 2^-127, 255 is NaN)."""
    s = s.to(gl.int16) & 255
    bits = gl.where(s > 0, s << 7, 64)
    bits = gl.where(s == 255, 0x7FC0, bits).to(gl.int16)
    return bits.to(gl.bfloat16, bitcast=True)


@gluon.jit
def _scale(w, s):
    """w * s for bf16 tensors (s broadcast to w's shape), two elements per bf16x2 multiply;
    exact, since s is a power of two (only overflow or a subnormal result would round)."""
    return gl.inline_asm_elementwise("mul.rn.bf16x2 $0, $1, $2;", "=r,r,r", [w, s],
                                     dtype=gl.bfloat16, is_pure=True, pack=2)


@gluon.constexpr_function
def word_smem(BK):
    """HopperWeight's codes tile [BN, BK/2] bytes (TMA, NVMMA swizzle of BK/2-byte rows) seen
    as 32-bit words: the same bytes, the same swizzle."""
    return gl.NVMMASharedLayout(swizzle_byte_width=BK // 2, element_bitwidth=32, rank=2)


@gluon.constexpr_function
def pair_smem():
    """The decoded W tile [BN, 64] bf16 (128-byte swizzle) seen as [BN, 32] bf16 pairs."""
    return gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=32, rank=2)


@gluon.jit
def _factor_pair(s, FUSED: gl.constexpr):
    """int32 holding the bf16 factor of E8M0 bytes s twice: 2^(s-1) (FUSED, s <= 128) or
    2^(s-127) (exact; 0 the subnormal 2^-127, 255 NaN)."""
    s = s.to(gl.int32) & 255
    if FUSED:
        bits = (s + 126) << 7
    else:
        bits = gl.where(s > 0, s << 7, 64)
        bits = gl.where(s == 255, 0x7FC0, bits)
    return bits | (bits << 16)


@gluon.jit
def decode_packed_tile(words, s_lo, s_hi, BN: gl.constexpr, BK: gl.constexpr,
                       FUSED: gl.constexpr):
    """[BN, BK/2] int32, each a bf16 pair of the [BN, BK] weights in K order (BK = 64: one
    HopperWeight group), from code words [BN, BK/8] (word_layout; byte j: element j low,
    element 32 + j high, rotated) and the two blocks' scale bytes [BN, 1]: 18 instructions
    for a word's 8 elements (FUSED; 22 without), against ~28 for decode_tile's fp4_to_fp."""
    f_lo = _factor_pair(s_lo, FUSED).broadcast_to([BN, BK // 8])
    f_hi = _factor_pair(s_hi, FUSED).broadcast_to([BN, BK // 8])
    lo0, hi0, lo1, hi1 = gl.inline_asm_elementwise(
        WORD_DECODE_FUSED_ASM if FUSED else WORD_DECODE_ASM, "=r,=r,=r,=r,r,r,r",
        [words, f_lo, f_hi], dtype=(gl.int32, gl.int32, gl.int32, gl.int32), is_pure=True,
        pack=1)
    lo = gl.join(lo0, lo1).reshape([BN, BK // 4])  # pairs 2w, 2w + 1: elements 4w..4w + 3
    hi = gl.join(hi0, hi1).reshape([BN, BK // 4])  # elements 32 + 4w..
    return gl.join(lo, hi).permute((0, 2, 1)).reshape([BN, BK // 2])


@gluon.jit
def decode_tile(codes, sc, BN: gl.constexpr, BK: gl.constexpr, DW: gl.constexpr):
    """[BN, BK] bf16 weights from codes [BN, BK/2] (code_layout_2d) and scale bytes
    [BN, BK/32] (SliceLayout(2, value_layout)): E2M1 x 2^(s-127), exact."""
    codes = gl.convert_layout(codes.reshape([BN, BK // 32, 16]), code_layout(BN, BK, DW))
    w = gl.convert_layout(gl.fp4_to_fp(codes, gl.bfloat16, 2), value_layout(BN, BK, DW))
    w = _scale(w, gl.expand_dims(_e8m0_to_bf16(sc), 2))
    return w.reshape([BN, BK])


@gluon.jit
def ws_decode_kernel(codes_ptr, s_ptr, out_ptr, N, K, BN: gl.constexpr, BK: gl.constexpr):
    """out [N, K] bf16 = dequantize(codes [N, K/2], scales [N, K/32]) through decode_tile,
    the GEMM's decoder (bit-exact twin: mxfp4.codec.dequantize_blocks); num_warps = 4."""
    off_n = gl.program_id(0) * BN
    k0 = gl.program_id(1) * BK
    C2: gl.constexpr = code_layout_2d(BN, BK, 4)
    SL: gl.constexpr = gl.SliceLayout(2, value_layout(BN, BK, 4))
    rc = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, C2))
    jc = k0 // 2 + gl.arange(0, BK // 2, layout=gl.SliceLayout(0, C2))
    c_ok = (rc < N)[:, None] & (jc < K // 2)[None, :]
    codes = gl.load(codes_ptr + rc.to(gl.int64)[:, None] * (K // 2) + jc[None, :], mask=c_ok,
                    other=0)
    rs = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, SL))
    ks = k0 // 32 + gl.arange(0, BK // 32, layout=gl.SliceLayout(0, SL))
    s_ok = (rs < N)[:, None] & (ks < K // 32)[None, :]
    sc = gl.load(s_ptr + rs.to(gl.int64)[:, None] * (K // 32) + ks[None, :], mask=s_ok, other=127)
    OL: gl.constexpr = gl.BlockedLayout([1, 8], [32 // (BK // 8), BK // 8], [4, 1], [1, 0])
    w = gl.convert_layout(decode_tile(codes, sc, BN, BK, 4), OL)
    ro = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, OL))
    ko = k0 + gl.arange(0, BK, layout=gl.SliceLayout(0, OL))
    gl.store(out_ptr + ro.to(gl.int64)[:, None] * K + ko[None, :], w,
             mask=(ro < N)[:, None] & (ko < K)[None, :])


@gluon.jit
def ws_decode_packed_kernel(codes_ptr, s_ptr, out_ptr, NP, KP, BN: gl.constexpr,
                            BK: gl.constexpr, FUSED: gl.constexpr):
    """out [NP, KP] bf16 = HopperWeight codes [NP, KP/2] and scales [KP/32, NP] through
    decode_packed_tile (bit-exact twin: HopperWeight.to_mx, then the codec); num_warps = 4."""
    off_n = gl.program_id(0) * BN
    k0 = gl.program_id(1) * BK
    WL: gl.constexpr = word_layout(BN, BK, 4)
    rc = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, WL))
    jc = k0 // 8 + gl.arange(0, BK // 8, layout=gl.SliceLayout(0, WL))
    words = gl.load(codes_ptr.to(gl.pointer_type(gl.int32), bitcast=True)
                    + rc.to(gl.int64)[:, None] * (KP // 8) + jc[None, :])
    kb = k0 // 32
    z = gl.zeros([1], gl.int32, gl.SliceLayout(0, WL))[None, :]
    s_lo = gl.load(s_ptr + kb.to(gl.int64) * NP + rc[:, None] + z)
    s_hi = gl.load(s_ptr + (kb + 1).to(gl.int64) * NP + rc[:, None] + z)
    pairs = decode_packed_tile(words, s_lo, s_hi, BN, BK, FUSED)
    ro = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, pairs.type.layout))
    ko = k0 // 2 + gl.arange(0, BK // 2, layout=gl.SliceLayout(0, pairs.type.layout))
    gl.store(out_ptr.to(gl.pointer_type(gl.int32), bitcast=True)
             + ro.to(gl.int64)[:, None] * (KP // 2) + ko[None, :], pairs)
