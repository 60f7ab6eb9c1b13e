"""The Gluon GEMMs' HopperWeight decodes, run on the CPU: the PTX of
`kernels.unpack.word_decode_asm` (warp-specialized GEMM) and of
`kernels.unpack.halfword_decode_asm` (register-operand GEMM) is executed by a small
interpreter of the few instructions it uses, the outputs are put in K order as
`ws_decode.decode_packed_tile` and `rs_gemm_kernel.decode_fragment` do (split, join, permute,
reshape), and the result must equal the codec's dequantization bit for bit. (Gluon has no
interpreter; benchmarks/ws_gemm_device.py checks the compiled kernels on a GPU.)"""

import numpy as np
import pytest
import torch

from mxfp4 import codec
from mxfp4.kernels.unpack import halfword_decode_asm, word_decode_asm
from mxfp4.layouts import prepack
from mxfp4.tensor import MXTensor

MASK = np.uint64(0xFFFFFFFF)


def _bf16(bits: np.ndarray) -> torch.Tensor:
    """float32 values of bf16 bit patterns (uint16 in a wider array)."""
    return torch.from_numpy(bits.astype(np.uint16).view(np.int16).copy()).view(
        torch.bfloat16).float()


def _bits(values: torch.Tensor) -> np.ndarray:
    return values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).astype(np.uint64)


def _fma_bf16x2(a, b, c):
    """fma.rn.bf16x2 on uint32 lanes: both halves a * b + c, rounded once to bf16 (the products
    of these operands are exact in float32, so float32 math then one rounding matches)."""
    out = np.zeros_like(a)
    for shift in (np.uint64(0), np.uint64(16)):
        half = [_bf16((x >> shift) & np.uint64(0xFFFF)) for x in (a, b, c)]
        out |= _bits(half[0] * half[1] + half[2]) << shift
    return out


def _prmt(a, b, selector):
    """prmt.b32 with byte selectors only (no sign replication): bytes 0-3 of a, 4-7 of b."""
    pool = [(a >> np.uint64(8 * i)) & np.uint64(0xFF) for i in range(4)]
    pool += [(b >> np.uint64(8 * i)) & np.uint64(0xFF) for i in range(4)]
    out = np.zeros_like(a)
    for i in range(4):
        pick = (selector >> (4 * i)) & 0xF
        assert pick < 8, "sign-replicating selectors are not used"
        out |= pool[pick] << np.uint64(8 * i)
    return out


def _lop3(a, b, c, lut):
    out = np.zeros_like(a)
    for i in range(8):  # bit i of the table: a = bit 2, b = bit 1, c = bit 0 of i
        if lut >> i & 1:
            term = MASK
            for x, bit in ((a, 4), (b, 2), (c, 1)):
                term = term & (x if i & bit else ~x & MASK)
            out |= term
    return out


def run_ptx(ptx: str, operands: dict) -> dict:
    """Execute straight-line PTX on uint32 lanes (numpy uint64 arrays); operands: $n -> array.
    Returns every register, $n included."""
    regs = dict(operands)
    shape = next(iter(operands.values())).shape

    def val(tok):
        tok = tok.strip()
        if tok in regs:
            return regs[tok]
        return np.full(shape, int(tok, 0), dtype=np.uint64)

    for line in ptx.splitlines():
        line = line.strip().rstrip(";")
        if not line or line in "{}" or line.startswith(".reg"):
            continue
        op, args = line.split(None, 1)
        dst, *src = [t.strip() for t in args.split(",")]
        if op == "mov.b32":
            regs[dst] = val(src[0])
        elif op == "prmt.b32":
            regs[dst] = _prmt(val(src[0]), val(src[1]), int(src[2], 0))
        elif op == "shr.b32":
            regs[dst] = val(src[0]) >> np.uint64(int(src[1]))
        elif op == "shl.b32":
            regs[dst] = (val(src[0]) << np.uint64(int(src[1]))) & MASK
        elif op == "lop3.b32":
            regs[dst] = _lop3(val(src[0]), val(src[1]), val(src[2]), int(src[3], 0))
        elif op == "fma.rn.bf16x2":
            regs[dst] = _fma_bf16x2(val(src[0]), val(src[1]), val(src[2]))
        else:
            raise AssertionError(f"the interpreter does not know {op}")
    return regs


def _factor_pairs(s: np.ndarray, fused: bool) -> np.ndarray:
    """ws_decode._factor_pair: the bf16 factor of scale bytes s, twice in a 32-bit word."""
    s = s.astype(np.uint64)
    if fused:
        bits = (s + np.uint64(126)) << np.uint64(7)
    else:
        bits = np.where(s > 0, s << np.uint64(7), np.uint64(64))
        bits = np.where(s == 255, np.uint64(0x7FC0), bits)
    return bits | (bits << np.uint64(16))


def decode_like_the_kernel(w, fused: bool) -> torch.Tensor:
    """bf16 [Np, Kp] of a HopperWeight, one 64-element group (a K step) at a time, as
    decode_packed_tile assembles the asm's outputs."""
    words = w.codes.contiguous().view(torch.int32).numpy().view(np.uint32).astype(np.uint64)
    scales = w.scales.numpy()
    rows, groups = words.shape[0], words.shape[1] // 8
    out = []
    for g in range(groups):
        f_lo = np.repeat(_factor_pairs(scales[2 * g], fused)[:, None], 8, axis=1)
        f_hi = np.repeat(_factor_pairs(scales[2 * g + 1], fused)[:, None], 8, axis=1)
        r = run_ptx(word_decode_asm(fused), {"$4": words[:, 8 * g:8 * g + 8], "$5": f_lo,
                                             "$6": f_hi})
        lo0, hi0, lo1, hi1 = (torch.from_numpy(r[f"${i}"].astype(np.int64)) for i in range(4))
        lo = torch.stack((lo0, lo1), -1).reshape(rows, 16)  # gl.join + reshape
        hi = torch.stack((hi0, hi1), -1).reshape(rows, 16)
        pairs = torch.stack((lo, hi), -1).permute(0, 2, 1).reshape(rows, 32)
        out.append(pairs.to(torch.int32))
    pairs = torch.cat(out, 1).contiguous()
    return pairs.view(torch.int16).view(torch.bfloat16)  # little-endian: low half first


def decode_like_the_fragment(w, fused: bool) -> torch.Tensor:
    """bf16 [Np, Kp] of a HopperWeight as rs_gemm_kernel.decode_fragment assembles it: a row's
    16 halfwords a group as [q, b, t] (column 8q + 4b + t), split on b, decoded in pairs of
    halfwords, joined and permuted into pair order 16 hi + 8 q + 4 b + t."""
    half = w.codes.contiguous().view(torch.int16).to(torch.int64)  # sign-extended, as in .to()
    scales = w.scales.numpy()
    rows, groups = half.shape[0], half.shape[1] // 16
    out = []
    for g in range(groups):
        h = half[:, 16 * g:16 * g + 16].reshape(rows, 2, 2, 4).permute(0, 1, 3, 2)
        h_a, h_b = (x.numpy().astype(np.uint64) & MASK for x in h.unbind(-1))  # gl.split
        f_lo = np.broadcast_to(_factor_pairs(scales[2 * g], fused)[:, None, None], h_a.shape)
        f_hi = np.broadcast_to(_factor_pairs(scales[2 * g + 1], fused)[:, None, None], h_a.shape)
        r = run_ptx(halfword_decode_asm(fused), {"$4": h_a, "$5": h_b, "$6": f_lo, "$7": f_hi})
        lo_a, hi_a, lo_b, hi_b = (torch.from_numpy(r[f"${i}"].astype(np.int64)) for i in range(4))
        pairs = torch.stack((torch.stack((lo_a, lo_b), -1), torch.stack((hi_a, hi_b), -1)), -1)
        out.append(pairs.permute(0, 4, 1, 3, 2).reshape(rows, 32).to(torch.int32))
    return torch.cat(out, 1).contiguous().view(torch.int16).view(torch.bfloat16)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("decode", [decode_like_the_kernel, decode_like_the_fragment])
def test_the_word_decode_equals_the_codec(fused, decode):
    g = torch.Generator().manual_seed(5)
    n, k = 24, 160  # K not a multiple of 64: the layout's zero-padded group decodes too
    codes = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=g)
    top = 129 if fused else 256  # the one-fma form needs every byte <= 128; else 0..255
    scales = torch.randint(0, top, (n, k // 32), dtype=torch.uint8, generator=g)
    scales.view(-1)[:min(top, scales.numel())] = torch.arange(min(top, scales.numel()),
                                                              dtype=torch.uint8)
    w = MXTensor(codes, scales, (n, k), 1)
    got = decode(prepack(w), fused)[:n, :k]
    ref = codec.dequantize_blocks(codes, scales, (n, k), 1, 32, torch.bfloat16)
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(got), nan)
    assert torch.equal(got[~nan].view(torch.int16), ref[~nan].view(torch.int16))


def test_the_interpreter_knows_its_instructions():
    one = np.array([0x12345678], dtype=np.uint64)
    assert run_ptx("prmt.b32 d, $0, 0, 0x3424;", {"$0": one})["d"][0] == 0x12003400
    assert run_ptx("lop3.b32 d, $0, $1, 0xF0F0F0F0, 0xA8;",
                   {"$0": one, "$1": np.array([0x0F], dtype=np.uint64)})["d"][0] == \
        (0x12345678 | 0x0F) & 0xF0F0F0F0
    two = np.array([0x3F803F80], dtype=np.uint64)  # bf16 1.0 twice
    assert run_ptx("fma.rn.bf16x2 d, $0, $0, $0;", {"$0": two})["d"][0] == 0x40004000  # 2.0
