"""The MoE's grouped W1 and W2 GEMMs on the warp-specialized tile
(kernels/ws_gemm_kernel.ws_tile) or, with RS, the register-operand tile
(kernels/rs_gemm_kernel.rs_tile), Gluon for triton 3.6 on sm_90a (issue 24). Host side and
reference twins: kernels/ws_moe.py (the Triton kernels kernels/moe_gemm._w1_kernel and
_w2_kernel compute the same products).

One program = one row block of the expert-sorted pairs (the align kernel's block table) x one
tile of BN output columns. W2's input rows are already sorted and contiguous (`a`, written by
W1 at the block's rows), so TMA reads them from the block's first row; rows past the block's
count belong to the next expert: computed, never stored. The codes descriptor spans the stacked
experts [E * NP, KP/2] (expert e's row n is row e * NP + n), the scales are each expert's
HopperWeight scales [KS = KP/32, NP]. The epilogue adds b2[e], multiplies by the pair's routing
weight and writes the pair's row of y (token order), as _w2_kernel does. W1 reads the same
rows of xs, the tokens' rows of x gathered in sorted-pair order by the host (TMA cannot
gather on Hopper), and its epilogue applies GPT-OSS's SwiGLU to the interleaved (gate,
linear) weight rows and writes the block's rows of `a`.
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from .rs_gemm_kernel import rs_tile
from .ws_gemm_kernel import out_layout, ws_tile


@gluon.jit
def _w2_epilogue(acc, b2_ptr, wts_ptr, y_ptr, pair_ptr, e, start, rows, off_n, H,
                 BN: gl.constexpr, BM: gl.constexpr, HAS_BIAS: gl.constexpr,
                 SPLIT_K: gl.constexpr, num_warps: gl.constexpr):
    """y[pair, n] = (acc[n, r] + b2[e, n]) * wts[pair] in bf16 for the block's rows r < rows."""
    OL: gl.constexpr = out_layout(BN, BM, num_warps)
    acc = gl.convert_layout(acc, OL)
    rn = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, OL))
    rm = gl.arange(0, BM, layout=gl.SliceLayout(0, OL))
    ok_m = rm < rows
    pair = gl.load(pair_ptr + start + rm, mask=ok_m, other=0)
    wt = gl.load(wts_ptr + pair, mask=ok_m, other=0.0)
    bias = gl.load(b2_ptr + e.to(gl.int64) * H + rn, mask=rn < H, other=0.0).to(gl.float32)
    y = (acc + bias[:, None]) * wt[None, :]
    gl.store(y_ptr + pair.to(gl.int64)[None, :] * H + rn[:, None], y.to(gl.bfloat16),
             mask=ok_m[None, :] & (rn < H)[:, None])


@gluon.jit
def _block_tile(block_expert_ptr, block_start_ptr, block_rows_ptr, NB, NP, BN: gl.constexpr,
                GROUP_M: gl.constexpr):
    """(expert, first row, rows, first output column) of this program's row block and column
    tile; expert < 0 for an unused block. Groups of GROUP_M row blocks sweep the column tiles
    (an expert's blocks are adjacent, so its weight tiles come from DRAM about once)."""
    pid = gl.program_id(0)
    per_group = GROUP_M * (NP // BN)
    first = (pid // per_group) * GROUP_M
    group = gl.minimum(NB - first, GROUP_M)
    b = first + (pid % per_group) % group
    e = gl.load(block_expert_ptr + b)
    start = gl.load(block_start_ptr + b)
    rows = gl.load(block_rows_ptr + b)
    return e, start, rows, ((pid % per_group) // group) * BN


@gluon.jit
def _swiglu(gate, lin, alpha, limit):
    """GPT-OSS SwiGLU (kernels/moe_routing.swiglu): gate clamped above at limit, lin to
    +-limit, gate * sigmoid(alpha * gate) * (lin + 1)."""
    gate = gl.minimum(gate, limit)
    lin = gl.minimum(gl.maximum(lin, -limit), limit)
    return gate / (1.0 + gl.exp(-alpha * gate)) * (lin + 1.0)


@gluon.jit
def _w1_epilogue(acc, b1_ptr, a_ptr, e, start, rows, off_n, N2, alpha, limit,
                 BN: gl.constexpr, BM: gl.constexpr, HAS_BIAS: gl.constexpr,
                 SPLIT_K: gl.constexpr, num_warps: gl.constexpr):
    """a[start + r, (off_n + 2c) / 2] = SwiGLU(acc[2c] + b1, acc[2c + 1] + b1) in bf16 for the
    block's rows r < rows: weight rows 2c (gate) and 2c + 1 (linear) sit side by side in a
    thread (out_layout holds 8 consecutive rows), so the split is in registers."""
    OL: gl.constexpr = out_layout(BN, BM, num_warps)
    acc = gl.convert_layout(acc, OL)
    rn = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, OL))
    bias = gl.load(b1_ptr + e.to(gl.int64) * N2 + rn, mask=rn < N2, other=0.0).to(gl.float32)
    h = (acc + bias[:, None]).reshape([BN // 2, 2, BM]).permute((0, 2, 1))
    gate, lin = gl.split(h)  # [BN / 2, BM] each
    act = _swiglu(gate, lin, alpha, limit)
    CL: gl.constexpr = gl.SliceLayout(1, act.type.layout)
    ML: gl.constexpr = gl.SliceLayout(0, act.type.layout)
    cols = off_n // 2 + gl.arange(0, BN // 2, layout=CL)
    rm = gl.arange(0, BM, layout=ML)
    half = N2 // 2
    gl.store(a_ptr + (start + rm).to(gl.int64)[None, :] * half + cols[:, None],
             act.to(gl.bfloat16), mask=(rm < rows)[None, :] & (cols < half)[:, None])


@gluon.jit
def _expert_tile(x_desc, q_desc, s_desc, s_ptr, e, start, off_n, n_steps, N, NP, KS,
                 EPILOGUE: gl.constexpr, epilogue_args, STAGES: gl.constexpr,
                 DECODED: gl.constexpr, DECODERS: gl.constexpr, DECODE_WARPS: gl.constexpr,
                 DECODE_REGS: gl.constexpr, FUSED: gl.constexpr, RS: gl.constexpr,
                 LOADER: gl.constexpr, num_warps: gl.constexpr):
    """Expert e's weight tile from row off_n times the block's rows from `start`, on the
    register-operand tile (RS: scales through s_desc, rows e * KS..) or the warp-specialized
    one (scales from s_ptr, expert e's [KS, NP]); codes row e * NP + off_n."""
    if RS:
        rs_tile(x_desc, q_desc, s_desc, start, e * NP + off_n, e * KS, off_n, 0, n_steps,
                EPILOGUE, epilogue_args, False, 1, STAGES, FUSED, LOADER, num_warps)
    else:
        ws_tile(x_desc, q_desc, s_ptr + e.to(gl.int64) * KS * NP, start, e * NP + off_n,
                off_n, 0, n_steps, N, KS, NP, EPILOGUE, epilogue_args, False, 1, STAGES,
                DECODED, DECODERS, DECODE_WARPS, DECODE_REGS, LOADER, True, FUSED, num_warps)


@gluon.jit
def ws_moe_w1_kernel(x_desc, q_desc, s_desc, s_ptr, b1_ptr, a_ptr, block_expert_ptr,
                     block_start_ptr, block_rows_ptr, N2, H, NP, KS, NB, alpha, limit,
                     GROUP_M: gl.constexpr, STAGES: gl.constexpr, DECODED: gl.constexpr,
                     DECODERS: gl.constexpr, DECODE_WARPS: gl.constexpr,
                     DECODE_REGS: gl.constexpr, FUSED: gl.constexpr, RS: gl.constexpr,
                     LOADER: gl.constexpr, num_warps: gl.constexpr):
    """x_desc: TMA descriptor of xs [P, H] bf16 (x's rows in sorted-pair order), box [BM, BK];
    q_desc: of W1's codes [E * NP, KP/2], box [BN, BK/2]; s_ptr: scales [E, KS, NP] (RS: the
    register-operand tile, which reads them through s_desc, [E * KS, NP], box [2, BN]);
    a [P, N2 / 2] bf16 out, N2 = 2 I the interleaved gate / linear rows."""
    BK: gl.constexpr = x_desc.block_type.shape[1]
    BN: gl.constexpr = q_desc.block_type.shape[0]
    e, start, rows, off_n = _block_tile(block_expert_ptr, block_start_ptr, block_rows_ptr, NB,
                                        NP, BN, GROUP_M)
    if e < 0:  # an unused block of the worst-case grid
        return
    _expert_tile(x_desc, q_desc, s_desc, s_ptr, e, start, off_n, gl.cdiv(H, BK), N2, NP, KS,
                 _w1_epilogue, (b1_ptr, a_ptr, e, start, rows, off_n, N2, alpha, limit),
                 STAGES, DECODED, DECODERS, DECODE_WARPS, DECODE_REGS, FUSED, RS, LOADER,
                 num_warps)


@gluon.jit
def ws_moe_w2_kernel(a_desc, q_desc, s_desc, s_ptr, b2_ptr, wts_ptr, y_ptr, sorted_pair_ptr,
                     block_expert_ptr, block_start_ptr, block_rows_ptr, H, I, NP, KS, NB,
                     GROUP_M: gl.constexpr, STAGES: gl.constexpr, DECODED: gl.constexpr,
                     DECODERS: gl.constexpr, DECODE_WARPS: gl.constexpr,
                     DECODE_REGS: gl.constexpr, FUSED: gl.constexpr, RS: gl.constexpr,
                     LOADER: gl.constexpr, num_warps: gl.constexpr):
    """a_desc: TMA descriptor of a [P, I] bf16 (pairs in expert-sorted order), box [BM, BK];
    q_desc: of W2's codes [E * NP, KP/2], box [BN, BK/2]; s_ptr: scales [E, KS, NP] (RS:
    through s_desc, as in ws_moe_w1_kernel)."""
    BK: gl.constexpr = a_desc.block_type.shape[1]
    BN: gl.constexpr = q_desc.block_type.shape[0]
    e, start, rows, off_n = _block_tile(block_expert_ptr, block_start_ptr, block_rows_ptr, NB,
                                        NP, BN, GROUP_M)
    if e < 0:  # an unused block of the worst-case grid
        return
    _expert_tile(a_desc, q_desc, s_desc, s_ptr, e, start, off_n, gl.cdiv(I, BK), H, NP, KS,
                 _w2_epilogue, (b2_ptr, wts_ptr, y_ptr, sorted_pair_ptr, e, start, rows, off_n,
                                H), STAGES, DECODED, DECODERS, DECODE_WARPS, DECODE_REGS, FUSED,
                 RS, LOADER, num_warps)
