"""MXFP4 x bf16 GEMM for Hopper with the weights decoded into the wgmma's register operand
(Gluon, triton 3.6, sm_90a; issue 24's second design). Host side: kernels/rs_gemm.py.

out [M, N] = x [M, K] @ dequantize(W)^T for a HopperWeight W (layouts.py: codes [NP, KP/2],
byte j of a 64-element group holds elements j and 32 + j; scales [KP/32, NP]).

Why: the first warp-specialized design (ws_gemm_kernel.py) hands every decoded tile from
decoder warps to the wgmma warps through shared memory: stores, a proxy fence and two mbarrier
hand-offs a K step, measured at ~1,100 clk a 128 x 64 step at small M. Here the warpgroup that
multiplies also decodes, straight into the registers that wgmma reads as its A operand (the
weights are A: "swap AB", tokens are N), and keeps one wgmma in flight: step i + 1 is decoded
while wgmma i runs. A loader warp (or, with LOADER = False, the consumer itself) copies x, the
codes and the scale bytes of each step with TMA into an S-deep ring; nothing else crosses
partitions.

Register hazard: a wgmma in flight reads its A registers until a wait retires it, and PTX
makes writing them before then undefined. One loop body would rewrite the same registers
every step, so the loop is unrolled by two: even steps decode into one set of values, odd
steps into another, and each set is rewritten only after the wait that retired its wgmma.

Fragment order: a thread of the m64k16 A fragment holds, for rows r and r + 8 of its warp's
16, the elements 2t, 2t + 1, 2t + 8, 2t + 9 of each 16-wide K chunk (t = lane % 4). In the
HopperWeight byte order those are the halfwords t, t + 4, t + 8, t + 12 of the row's 64-element
group (their low nibbles: chunks 0 and 1; high nibbles: chunks 2 and 3), so each thread loads
8 halfwords a step and the decoded pairs land where the fragment wants them: the final layout
conversion moves no data (the SASS that `scripts/compile_sm90.py --sass --dump DIR` writes has
no SHFL and no STS in the loop).
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier,
                                                              tma, warpgroup_mma,
                                                              warpgroup_mma_wait)

from .unpack import halfword_decode_asm
from .ws_decode import _factor_pair
from .ws_gemm_kernel import _epilogue, acc_layout, tile_coords

HALFWORD_ASM = gl.constexpr(halfword_decode_asm(fused=False))
HALFWORD_FUSED_ASM = gl.constexpr(halfword_decode_asm(fused=True))


@gluon.constexpr_function
def halfword_layout(BN, num_warps):
    """[BN, 16] halfwords of a 64-element code group per row: lane = 4 * (row % 8) + t holds
    columns t, t + 4, t + 8, t + 12 of rows r and r + 8 (the wgmma A fragment's rows);
    warps stacked along the rows, 16 each."""
    warp_bases = [[16 << i, 0] for i in range(num_warps.bit_length() - 1)]
    return gl.DistributedLinearLayout(
        reg_bases=[[0, 4], [0, 8], [8, 0]], lane_bases=[[0, 1], [0, 2], [1, 0], [2, 0], [4, 0]],
        warp_bases=warp_bases, block_bases=[], shape=[BN, 16])


@gluon.constexpr_function
def scale_smem():
    """A scales slot [2, BN] bytes (TMA, no swizzle: the two rows are read as one flat run)."""
    return gl.NVMMASharedLayout(swizzle_byte_width=0, element_bitwidth=8, rank=2)


@gluon.constexpr_function
def halfword_smem():
    """A codes slot [BN, 32] bytes (TMA, 32-byte swizzle) seen as [BN, 16] halfwords."""
    return gl.NVMMASharedLayout(swizzle_byte_width=32, element_bitwidth=16, rank=2)


@gluon.jit
def decode_fragment(q_slot, s_slot, BN: gl.constexpr, BK: gl.constexpr,
                    FUSED: gl.constexpr, num_warps: gl.constexpr):
    """The [BN, BK = 64] bf16 weights of one step, each thread holding its wgmma A fragment's
    elements (converting to the DotOperandLayout moves no data), from a codes slot [BN, BK/2]
    and a scales slot [2, BN] (the step's two blocks)."""
    h = q_slot._reinterpret(gl.int16, [BN, 16], halfword_smem()).load(
        halfword_layout(BN, num_warps))
    # column 8q + 4b + t -> [BN, q, t, b]: b = 0 holds bytes 16q + 2t.., b = 1 16q + 8 + 2t..
    h = h.reshape([BN, 2, 2, 4]).permute((0, 1, 3, 2))
    h_a, h_b = gl.split(h)
    HL: gl.constexpr = h_a.type.layout
    SL: gl.constexpr = gl.SliceLayout(1, gl.SliceLayout(2, HL))
    flat = s_slot._reinterpret(gl.uint8, [2 * BN], gl.SwizzledSharedLayout(1, 1, 1, [0]))
    f_lo = _factor_pair(flat.slice(0, BN).load(SL), FUSED)
    f_hi = _factor_pair(flat.slice(BN, BN).load(SL), FUSED)
    f_lo = gl.expand_dims(gl.expand_dims(f_lo, 1), 2).broadcast_to([BN, 2, 4])
    f_hi = gl.expand_dims(gl.expand_dims(f_hi, 1), 2).broadcast_to([BN, 2, 4])
    lo_a, hi_a, lo_b, hi_b = gl.inline_asm_elementwise(
        HALFWORD_FUSED_ASM if FUSED else HALFWORD_ASM, "=r,=r,=r,=r,r,r,r,r",
        [h_a.to(gl.int32), h_b.to(gl.int32), f_lo, f_hi],
        dtype=(gl.int32, gl.int32, gl.int32, gl.int32), is_pure=True, pack=1)
    # bf16 pair p (elements 2p, 2p + 1) = 16 hi + 8 q + 4 b + t
    pairs = gl.join(gl.join(lo_a, lo_b), gl.join(hi_a, hi_b))  # [BN, q, t, b, hi]
    pairs = pairs.permute((0, 4, 1, 3, 2)).reshape([BN, BK // 2])
    even, odd = gl.inline_asm_elementwise("mov.b32 {$0, $1}, $2;", "=h,=h,r", [pairs],
                                          dtype=(gl.bfloat16, gl.bfloat16), is_pure=True, pack=1)
    return gl.join(even, odd).reshape([BN, BK])


@gluon.jit
def _rs_step(i, acc, x_bufs, q_bufs, s_bufs, ready, BN: gl.constexpr, BK: gl.constexpr,
             FUSED: gl.constexpr, num_warps: gl.constexpr):
    """Decode step i's weights and issue its wgmma (async); returns (acc token, A values)."""
    S: gl.constexpr = x_bufs.shape[0]
    s = i % S
    mbarrier.wait(ready.index(s), (i // S) & 1)
    a = decode_fragment(q_bufs.index(s), s_bufs.index(s), BN, BK, FUSED, num_warps)
    a = gl.convert_layout(a, gl.DotOperandLayout(0, acc.type.layout, 2))
    acc = warpgroup_mma(a, x_bufs.index(s).permute((1, 0)), acc, is_async=True)
    return acc, a


@gluon.jit
def _load_step(src, ready, x_bufs, q_bufs, s_bufs, j, n_steps, BK: gl.constexpr):
    """TMA copies of step j's x box [BM, BK], codes box [BN, BK/2] and scales box [2, BN]
    into slot j % S, one barrier for all three (nothing past the last step). src: (x_desc,
    q_desc, s_desc, first x row, first codes row, first scale row, first weight row, k_lo)."""
    x_desc, q_desc, s_desc, off_m, q_row, s_row, off_n, k_lo = src
    nbytes: gl.constexpr = (x_desc.block_type.nbytes + q_desc.block_type.nbytes
                            + s_desc.block_type.nbytes)
    s = j % x_bufs.shape[0]
    k = k_lo + j * BK
    ok = j < n_steps
    mbarrier.expect(ready.index(s), nbytes, pred=ok)
    tma.async_copy_global_to_shared(q_desc, [q_row, k // 2], ready.index(s), q_bufs.index(s),
                                    pred=ok)
    tma.async_copy_global_to_shared(s_desc, [s_row + k // 32, off_n], ready.index(s),
                                    s_bufs.index(s), pred=ok)
    tma.async_copy_global_to_shared(x_desc, [off_m, k], ready.index(s), x_bufs.index(s),
                                    pred=ok)


@gluon.jit
def _release(i, src, ready, free, x_bufs, q_bufs, s_bufs, n_steps, BK: gl.constexpr,
             LOADER: gl.constexpr):
    """After the wait that retired wgmma i - 1 (step i's in flight): its slot is free. With the
    loader warp, tell it; without, every warpgroup passes a barrier and step i + S - 1 is
    loaded into that slot (slot S - 1, still unused, at i = 0)."""
    S: gl.constexpr = x_bufs.shape[0]
    if LOADER:
        mbarrier.arrive(free.index((i + S - 1) % S), count=1, pred=i > 0)
    else:
        gl.thread_barrier()
        _load_step(src, ready, x_bufs, q_bufs, s_bufs, i + S - 1, n_steps, BK)


@gluon.jit
def _rs_consumer(src, x_bufs, q_bufs, s_bufs, ready, free, n_steps, EPILOGUE: gl.constexpr,
                 epilogue_args, BN: gl.constexpr, BM: gl.constexpr, BK: gl.constexpr,
                 HAS_BIAS: gl.constexpr, SPLIT_K: gl.constexpr, FUSED: gl.constexpr,
                 LOADER: gl.constexpr, num_warps: gl.constexpr):
    S: gl.constexpr = x_bufs.shape[0]
    ACC: gl.constexpr = acc_layout(BN, BM, num_warps)
    if not LOADER:  # this partition loads its own steps: the first S - 1 up front
        for j in gl.static_range(S - 1):
            _load_step(src, ready, x_bufs, q_bufs, s_bufs, j, n_steps, BK)
    acc = gl.zeros([BN, BM], gl.float32, ACC)
    a_odd = gl.zeros([BN, BK], gl.bfloat16, gl.DotOperandLayout(0, ACC, 2))
    for j in range(0, n_steps // 2):
        i = 2 * j
        acc, a_even = _rs_step(i, acc, x_bufs, q_bufs, s_bufs, ready, BN, BK, FUSED, num_warps)
        acc, a_odd = warpgroup_mma_wait(num_outstanding=1, deps=(acc, a_odd))  # retires i - 1
        _release(i, src, ready, free, x_bufs, q_bufs, s_bufs, n_steps, BK, LOADER)
        acc, a_odd = _rs_step(i + 1, acc, x_bufs, q_bufs, s_bufs, ready, BN, BK, FUSED,
                              num_warps)
        acc, a_even = warpgroup_mma_wait(num_outstanding=1, deps=(acc, a_even))  # retires i
        _release(i + 1, src, ready, free, x_bufs, q_bufs, s_bufs, n_steps, BK, LOADER)
    if n_steps % 2:  # the last, even step (nothing left to load)
        i = n_steps - 1
        acc, a_even = _rs_step(i, acc, x_bufs, q_bufs, s_bufs, ready, BN, BK, FUSED, num_warps)
        acc, a_odd = warpgroup_mma_wait(num_outstanding=1, deps=(acc, a_odd))
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
    EPILOGUE(acc, *epilogue_args, BN, BM, HAS_BIAS, SPLIT_K, num_warps)


@gluon.jit
def _rs_loader(src, ready, free, x_bufs, q_bufs, s_bufs, n_steps, BK: gl.constexpr):
    """The loader warp: step i into slot i % S once the consumer freed it."""
    S: gl.constexpr = x_bufs.shape[0]
    for i in range(n_steps):
        # mbarriers start with phase 1 complete, so the first pass does not wait
        mbarrier.wait(free.index(i % S), ((i // S) & 1) ^ 1)
        _load_step(src, ready, x_bufs, q_bufs, s_bufs, i, n_steps, BK)


@gluon.jit
def rs_tile(x_desc, q_desc, s_desc, off_m, q_row, s_row, off_n, k_lo, n_steps,
            EPILOGUE: gl.constexpr, epilogue_args, HAS_BIAS: gl.constexpr,
            SPLIT_K: gl.constexpr, STAGES: gl.constexpr, FUSED: gl.constexpr,
            LOADER: gl.constexpr, num_warps: gl.constexpr):
    """One [BM tokens, BN weight rows] tile over n_steps K steps from k_lo: x rows from off_m,
    codes rows from q_row, scale rows from s_row (+ k / 32), scale columns from off_n; the
    consumer ends with EPILOGUE(acc [BN, BM] fp32, *epilogue_args, BN, BM, HAS_BIAS, SPLIT_K,
    num_warps). LOADER: a loader warp issues the copies (its partition is padded to a
    warpgroup, so the CTA has num_warps + 4 warps); without, the consumer issues them itself
    after a barrier a step (all warps at the register cap: 16 warps keep 128 registers)."""
    BM: gl.constexpr = x_desc.block_type.shape[0]
    BK: gl.constexpr = x_desc.block_type.shape[1]
    BN: gl.constexpr = q_desc.block_type.shape[0]
    x_bufs = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, BK], x_desc.layout)
    q_bufs = gl.allocate_shared_memory(gl.uint8, [STAGES, BN, BK // 2], q_desc.layout)
    s_bufs = gl.allocate_shared_memory(gl.uint8, [STAGES, 2, BN], s_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    free = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(ready.index(i), count=1)
        mbarrier.init(free.index(i), count=1)
    src = (x_desc, q_desc, s_desc, off_m, q_row, s_row, off_n, k_lo)
    if LOADER:
        gl.warp_specialize([
            (_rs_consumer, (src, x_bufs, q_bufs, s_bufs, ready, free, n_steps, EPILOGUE,
                            epilogue_args, BN, BM, BK, HAS_BIAS, SPLIT_K, FUSED, LOADER,
                            num_warps)),
            (_rs_loader, (src, ready, free, x_bufs, q_bufs, s_bufs, n_steps, BK)),
        ], [1], [24])
    else:
        fence_async_shared()  # the barriers' initialization, before TMA signals them
        _rs_consumer(src, x_bufs, q_bufs, s_bufs, ready, free, n_steps, EPILOGUE,
                     epilogue_args, BN, BM, BK, HAS_BIAS, SPLIT_K, FUSED, LOADER, num_warps)


@gluon.jit
def rs_gemm_kernel(x_desc, q_desc, s_desc, bias_ptr, out_ptr, ws_ptr, lock_ptr, M, N, K,
                   stride_om, k_chunk, HAS_BIAS: gl.constexpr, SPLIT_K: gl.constexpr,
                   GROUP_M: gl.constexpr, STAGES: gl.constexpr, FUSED: gl.constexpr,
                   LOADER: gl.constexpr, num_warps: gl.constexpr):
    """out = x @ dequantize(W)^T (+ bias) for one [BM, BN] tile and one K split; x_desc: x
    [M, K] bf16, box [BM, BK]; q_desc: HopperWeight codes [NP, KP/2], box [BN, BK/2]; s_desc:
    its scales [KP/32, NP], box [2, BN]; k_chunk: K per split, a multiple of BK."""
    BM: gl.constexpr = x_desc.block_type.shape[0]
    BK: gl.constexpr = x_desc.block_type.shape[1]
    BN: gl.constexpr = q_desc.block_type.shape[0]
    pid_m, pid_n, pid_k, tiles_n, k_lo, n_steps = tile_coords(M, N, K, k_chunk, BM, BN, BK,
                                                              GROUP_M)
    off_m = pid_m * BM
    off_n = pid_n * BN
    rs_tile(x_desc, q_desc, s_desc, off_m, off_n, 0, off_n, k_lo, n_steps, _epilogue,
            (bias_ptr, out_ptr, ws_ptr, lock_ptr, M, N, stride_om, off_m, off_n, pid_m, pid_n,
             pid_k, tiles_n), HAS_BIAS, SPLIT_K, STAGES, FUSED, LOADER, num_warps)
