"""Warp-specialized MXFP4 x bf16 GEMM for Hopper (sm_90a), in Gluon as shipped with triton 3.6.

out [M, N] = x [M, K] (bf16) @ dequantize(W)^T, W [N, K] a plain MXTensor quantized along K
(codes [N, K/2] uint8, element 2j in the low nibble; scales [N, K/32] E8M0 bytes), fp32
accumulation, bf16 out. Reference twin: `mxfp4.ops.linear(x, w, backend="reference")`; the
device check (benchmarks/ws_gemm_device.py) compares with float64 math on the dequantized W.

Why warp specialization (issue 24): triton 3.6 waits for every wgmma whose A operand is decoded
in registers, so decode and tensor cores take turns. Here two or three partitions share a CTA:

- loader (1 warp, LOADER = True): TMA copies of the x tile [BM, BK] bf16 and the codes tile
  [BN, BK/2] into S-deep rings (x_ready / q_ready per slot). With LOADER = False there is no
  loader warp: the consumer issues its own x copies and the decoder its codes, S steps ahead,
  so 8 consumer + 4 decoder warps stay at 12 (a 13th warp pads the CTA to 16 warps, and ptxas
  compiles every partition under 65536 / (32 x warps) registers).
- decoder (DECODE_WARPS = 4 or 8 warps; DECODERS = 1 or 2 such partitions, taking alternate
  K steps so that one's waits and fences overlap the other's work): per K step reads the
  codes from shared memory (then frees the slot), decodes E2M1 x 2^(s-127) to bf16 (exact)
  and writes the [BN, BK] tile into a DECODED-deep ring of 128B-swizzled buffers: with two,
  step i + 1 waits for wgmma i - 1 to retire; deeper rings let the decoders run ahead. The
  scale bytes are plain loads (too narrow and unaligned for TMA), SCALE_CHUNK steps at a
  time through shared memory: the proxy fences each step needs (MEMBAR) order a thread's
  loads in flight too, so one load a step could pay a DRAM round trip a step; a chunk pays
  one per SCALE_CHUNK steps. PACKED (a HopperWeight, layouts.py): codes are read as 32-bit
  words and decoded with the v1 kernels' bit trick (decode_packed_tile), cheaper than
  fp4_to_fp on the plain layout.
- consumer (the default partition, num_warps = 4 or 8: one or two warpgroups, each owning
  BN / warpgroups weight rows): acc[BN, BM] += W tile @ x tile^T with async wgmma (W is
  wgmma's A from shared memory, x the B operand through a transposed view), one wgmma kept in
  flight; when step i-1's wgmma retires its x slot and W buffer are released. It also runs
  the epilogue, under its own register cap.

Weights are the MMA's M side ("swap AB"), so decode batches (M = 16..64) fill the 64-row wgmma
with weight rows and tokens are its N (16..256). Ragged M, N and K come from TMA's zero fill
(codes 0 decode to 0; masked scale loads read 127, i.e. 1.0) and masked stores. Split-K
partials go to an fp32 workspace and the last split to arrive sums them in split order (as
kernels/linear.py does): deterministic, no float atomics.
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma,
                                                              warpgroup_mma, warpgroup_mma_wait)

from .ws_decode import (code_layout_2d, decode_packed_tile, decode_tile, pair_smem,
                        value_layout, word_layout, word_smem)

LOADER_WARPS = gl.constexpr(1)
SCALE_CHUNK = gl.constexpr(16)  # K steps whose scale bytes the decoder loads at once


@gluon.constexpr_function
def acc_layout(BN, BM, num_warps):
    """wgmma accumulator layout for an [BN, BM] tile: warps stacked along the weight rows
    (16 each) as far as BN allows, the instruction as wide as BM allows (at most 256)."""
    along_n = min(num_warps, BN // 16)
    warps = [along_n, num_warps // along_n]
    n = min(256, BM // warps[1])
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=warps, instr_shape=[16, n, 16])


@gluon.constexpr_function
def out_layout(BN, BM, num_warps):
    """Epilogue layout of the [BN, BM] tile: 8 consecutive weight rows (16 bytes of one output
    row) per thread, so stores along N coalesce."""
    tn = min(32, BN // 8)
    return gl.BlockedLayout([8, 1], [tn, 32 // tn], [1, num_warps], [0, 1])


@gluon.jit
def _loader(x_desc, q_desc, x_ready, x_free, q_ready, q_free, x_bufs, q_bufs, off_m, q_row, k_lo,
            n_steps, BK: gl.constexpr):
    S: gl.constexpr = x_bufs.shape[0]
    for i in range(n_steps):
        s = i % S
        k = k_lo + i * BK
        # the codes slot is freed by the decoder, the x slot by the consumer's wgmma; mbarriers
        # start with phase 1 complete, so the first pass does not wait
        mbarrier.wait(q_free.index(s), ((i // S) & 1) ^ 1)
        mbarrier.expect(q_ready.index(s), q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [q_row, k // 2], q_ready.index(s), q_bufs.index(s))
        mbarrier.wait(x_free.index(s), ((i // S) & 1) ^ 1)
        mbarrier.expect(x_ready.index(s), x_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(x_desc, [off_m, k], x_ready.index(s), x_bufs.index(s))


@gluon.jit
def _load_step(desc, bars, bufs, j, n_steps, c0, c1):
    """TMA of step j's box at [c0, c1] into slot j % S (nothing past the last step)."""
    s = j % bufs.shape[0]
    ok = j < n_steps
    mbarrier.expect(bars.index(s), desc.block_type.nbytes, pred=ok)
    tma.async_copy_global_to_shared(desc, [c0, c1], bars.index(s), bufs.index(s), pred=ok)


@gluon.jit
def _decoder(s_ptr, q_desc, q_ready, q_free, decoded, w_free, q_bufs, w_bufs, s_buf, q_row,
             off_n, k_lo, n_steps, N, KS, NP, BN: gl.constexpr, BK: gl.constexpr, DW: gl.constexpr,
             LOADER: gl.constexpr, FIRST: gl.constexpr, STRIDE: gl.constexpr,
             PACKED: gl.constexpr, FUSED: gl.constexpr):
    """Decodes steps FIRST, FIRST + STRIDE, ...: with STRIDE decoder partitions, each one's
    chain of waits, loads, fences and stores overlaps the others' (STRIDE divides S and D,
    so every ring slot and its barriers belong to one partition). q_row: the tile's first row
    in the codes (q_desc), off_n: its first weight row (scale columns, PACKED)."""
    S: gl.constexpr = q_bufs.shape[0]
    D: gl.constexpr = w_bufs.shape[0]
    CH: gl.constexpr = SCALE_CHUNK  # this partition's steps per chunk of scale bytes, kept
    # in s_buf[FIRST * CH:][:CH]
    SL: gl.constexpr = gl.SliceLayout(2, value_layout(BN, BK, DW))  # [BN, BK/32] scales
    if not LOADER:  # this partition loads its own codes: its first steps up front
        for j in gl.static_range(FIRST, S, STRIDE):
            _load_step(q_desc, q_ready, q_bufs, j, n_steps, q_row, (k_lo + j * BK) // 2)
    for i in range(FIRST, n_steps, STRIDE):
        s = i % S
        d = i % D
        t = i // STRIDE  # this partition's step count
        if t % CH == 0:
            # scale bytes are plain loads (rows of K/32 bytes are too short and unaligned for
            # TMA), CH steps at a time: the fences below (SASS MEMBAR.ALL.CTA) order this
            # thread's loads in flight too, so a load issued every step, even steps ahead,
            # can cost a DRAM round trip every step
            gl.thread_barrier()  # every warp is done with the previous chunk
            if PACKED:
                _scale_chunk_packed(s_buf, FIRST * CH, s_ptr, off_n, k_lo // 32 + i * (BK // 32),
                                    STRIDE * (BK // 32), NP, KS, DW)
            else:
                _scale_chunk(s_buf, FIRST * CH, s_ptr, off_n, k_lo // 32 + i * (BK // 32),
                             STRIDE * (BK // 32), N, KS, DW)
            gl.thread_barrier()
        if PACKED:  # rows 2j, 2j + 1 of the [2 CH, BN] view: the step's two blocks
            rows = s_buf._reinterpret(gl.uint8, [s_buf.shape[0] * 2, BN, 1], s_buf.layout)
            WL: gl.constexpr = word_layout(BN, BK, DW)
            s_lo = rows.index(2 * (FIRST * CH + t % CH)).load(WL)
            s_hi = rows.index(2 * (FIRST * CH + t % CH) + 1).load(WL)
        else:
            sc = s_buf.index(FIRST * CH + t % CH).load(SL)
        mbarrier.wait(q_ready.index(s), (i // S) & 1)
        if PACKED:
            words = q_bufs.index(s)._reinterpret(gl.int32, [BN, BK // 8], word_smem(BK))
            codes = words.load(word_layout(BN, BK, DW))
        else:
            codes = q_bufs.index(s).load(code_layout_2d(BN, BK, DW))
        fence_async_shared()  # order the shared reads before the next TMA into this slot
        if LOADER:
            mbarrier.arrive(q_free.index(s), count=1)
        else:
            gl.thread_barrier()  # every warp has its codes before one thread reloads the slot
            _load_step(q_desc, q_ready, q_bufs, i + S, n_steps, q_row, (k_lo + (i + S) * BK) // 2)
        if PACKED:
            w = decode_packed_tile(codes, s_lo, s_hi, BN, BK, FUSED)
            mbarrier.wait(w_free.index(d), ((i // D) & 1) ^ 1)
            # bf16 pairs as 32-bit words: the same bytes under the same 128-byte swizzle
            w_bufs.index(d)._reinterpret(gl.int32, [BN, BK // 2], pair_smem()).store(w)
        else:
            w = decode_tile(codes, sc, BN, BK, DW)
            mbarrier.wait(w_free.index(d), ((i // D) & 1) ^ 1)
            w_bufs.index(d).store(w)
        fence_async_shared()  # the wgmma (async proxy) reads what these stores wrote
        mbarrier.arrive(decoded.index(d), count=1)


@gluon.jit
def _scale_chunk(s_buf, first: gl.constexpr, s_ptr, off_n, kb0, kb_step, N, KS,
                 DW: gl.constexpr):
    """s_buf[first + j] = scale bytes [BN, NB] of blocks kb0 + j * kb_step on, for j < CH
    (127 = 1.0 past N or K: TMA zero-fills those codes): one load of CH * BN rows, all in
    flight at once, and one store through a 2-D view of the (unswizzled, row-major) buffer."""
    CH: gl.constexpr = SCALE_CHUNK
    BN: gl.constexpr = s_buf.shape[1]
    NB: gl.constexpr = s_buf.shape[2]
    L: gl.constexpr = gl.BlockedLayout([1, NB], [32, 1], [DW, 1], [1, 0])
    i = gl.arange(0, CH * BN, layout=gl.SliceLayout(1, L))  # row i: step i // BN, row i % BN
    rows = off_n + i % BN
    kb = kb0 + (i // BN)[:, None] * kb_step
    kb = kb + gl.arange(0, NB, layout=gl.SliceLayout(0, L))[None, :]
    sc = gl.load(s_ptr + rows.to(gl.int64)[:, None] * KS + kb,
                 mask=(rows < N)[:, None] & (kb < KS), other=127)
    # (memdesc reshape asserts in triton 3.6; _reinterpret gives the same bytes another shape)
    rows_2d = s_buf._reinterpret(gl.uint8, [s_buf.shape[0] * BN, NB], s_buf.layout)
    rows_2d.slice(first * BN, CH * BN).store(sc)


@gluon.jit
def _scale_chunk_packed(s_buf, first: gl.constexpr, s_ptr, off_n, kb0, kb_step, NP, KS,
                        DW: gl.constexpr):
    """Rows (first + j) * NB + b of the [NB CH, BN] view of s_buf = HopperWeight scale row
    kb0 + j * kb_step + b (scales [KS = Kp/32, NP], transposed), columns off_n..: loads and
    stores along N; 127 past the ends (those codes are zero)."""
    CH: gl.constexpr = SCALE_CHUNK
    BN: gl.constexpr = s_buf.shape[1]
    NB: gl.constexpr = s_buf.shape[2]
    L: gl.constexpr = gl.BlockedLayout([1, 16], [32 // (BN // 16), BN // 16], [DW, 1], [1, 0])
    r = gl.arange(0, CH * NB, layout=gl.SliceLayout(1, L))  # row r: step r // NB, block r % NB
    kb = kb0 + (r // NB) * kb_step + r % NB
    cols = off_n + gl.arange(0, BN, layout=gl.SliceLayout(0, L))
    sc = gl.load(s_ptr + kb.to(gl.int64)[:, None] * NP + cols[None, :],
                 mask=(kb < KS)[:, None] & (cols < NP)[None, :], other=127)
    rows = s_buf._reinterpret(gl.uint8, [s_buf.shape[0] * NB, BN], s_buf.layout)
    rows.slice(first * NB, CH * NB).store(sc)


@gluon.jit
def _consumer(x_desc, x_ready, x_free, decoded, w_free, x_bufs, w_bufs, off_m, k_lo, n_steps,
              EPILOGUE: gl.constexpr, epilogue_args, BN: gl.constexpr, BM: gl.constexpr,
              BK: gl.constexpr,
              HAS_BIAS: gl.constexpr, SPLIT_K: gl.constexpr, LOADER: gl.constexpr,
              num_warps: gl.constexpr):
    S: gl.constexpr = x_bufs.shape[0]
    D: gl.constexpr = w_bufs.shape[0]
    acc = gl.zeros([BN, BM], gl.float32, acc_layout(BN, BM, num_warps))
    if not LOADER:  # this partition loads its own x tiles: the first S steps up front
        for j in gl.static_range(S - 1):  # slot S - 1 is loaded in step 0
            _load_step(x_desc, x_ready, x_bufs, j, n_steps, off_m, k_lo + j * BK)
    for i in range(n_steps):
        s = i % S
        d = i % D
        mbarrier.wait(x_ready.index(s), (i // S) & 1)
        mbarrier.wait(decoded.index(d), (i // D) & 1)
        acc = warpgroup_mma(w_bufs.index(d), x_bufs.index(s).permute((1, 0)), acc, is_async=True)
        # at most this step's wgmma in flight: step i - 1's has read its operands
        acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc, ))
        if LOADER:
            mbarrier.arrive(x_free.index((i + S - 1) % S), count=1, pred=i > 0)
        else:
            # every warpgroup's wgmma i - 1 has retired before step i - 1 + S's x lands there
            gl.thread_barrier()
            _load_step(x_desc, x_ready, x_bufs, i - 1 + S, n_steps, off_m,
                       k_lo + (i - 1 + S) * BK)
        mbarrier.arrive(w_free.index((i + D - 1) % D), count=1, pred=i > 0)
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
    # the epilogue runs here, under this partition's raised register cap (the kernel body's
    # cap is what the whole CTA's warps can share)
    EPILOGUE(acc, *epilogue_args, BN, BM, HAS_BIAS, SPLIT_K, num_warps)


@gluon.jit
def _epilogue(acc, bias_ptr, out_ptr, ws_ptr, lock_ptr, M, N, stride_om, off_m, off_n, pid_m,
              pid_n, pid_k, tiles_n, BN: gl.constexpr, BM: gl.constexpr, HAS_BIAS: gl.constexpr,
              SPLIT_K: gl.constexpr, num_warps: gl.constexpr):
    """out[m, n] = acc[n, m] (+ bias[n]) in bf16; split K: partials to the workspace, and the
    last split to arrive at this tile adds them in split order."""
    OL: gl.constexpr = out_layout(BN, BM, num_warps)
    acc = gl.convert_layout(acc, OL)
    rn = off_n + gl.arange(0, BN, layout=gl.SliceLayout(1, OL))
    rm = off_m + gl.arange(0, BM, layout=gl.SliceLayout(0, OL))
    mask = (rn < N)[:, None] & (rm < M)[None, :]
    out_ptrs = out_ptr + rm.to(gl.int64)[None, :] * stride_om + rn[:, None]
    if SPLIT_K == 1:
        if HAS_BIAS:
            acc += gl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(gl.float32)[:, None]
        gl.store(out_ptrs, acc.to(gl.bfloat16), mask=mask)
    else:
        ws_stride = M * N
        ws_tile = ws_ptr + rm.to(gl.int64)[None, :] * N + rn[:, None]
        gl.store(ws_tile + pid_k * ws_stride, acc, mask=mask)
        gl.thread_barrier()
        tile = pid_m * tiles_n + pid_n
        arrived = gl.atomic_add(lock_ptr + tile, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            total = gl.zeros([BN, BM], gl.float32, OL)
            for i in range(SPLIT_K):  # a loop, not unrolled: one partial tile live at a time
                total += gl.load(ws_tile + i * ws_stride, mask=mask, other=0.0,
                                 cache_modifier=".cg")
            if HAS_BIAS:
                total += gl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(gl.float32)[:, None]
            gl.store(out_ptrs, total.to(gl.bfloat16), mask=mask)
            gl.atomic_xchg(lock_ptr + tile, 0, sem="relaxed", scope="gpu")  # zero for next call


@gluon.jit
def tile_coords(M, N, K, k_chunk, BM: gl.constexpr, BN: gl.constexpr, BK: gl.constexpr,
                GROUP_M: gl.constexpr):
    """(token tile, weight tile, K split, weight tiles, first K, K steps) of this program:
    groups of GROUP_M token tiles sweep the weight tiles, so that both a group's x rows and
    the current weight tiles stay in L2; axis 1 is the K split (k_chunk each)."""
    pid = gl.program_id(0)
    pid_k = gl.program_id(1)
    tiles_m = gl.cdiv(M, BM)
    tiles_n = gl.cdiv(N, BN)
    per_group = GROUP_M * tiles_n
    first_m = (pid // per_group) * GROUP_M
    group = gl.minimum(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group
    pid_n = (pid % per_group) // group
    k_lo = pid_k * k_chunk
    return pid_m, pid_n, pid_k, tiles_n, k_lo, gl.cdiv(gl.minimum(k_chunk, K - k_lo), BK)


@gluon.jit
def ws_gemm_kernel(x_desc, q_desc, s_ptr, bias_ptr, out_ptr, ws_ptr, lock_ptr, M, N, K, KS, NP,
                   stride_om, k_chunk, HAS_BIAS: gl.constexpr, SPLIT_K: gl.constexpr,
                   GROUP_M: gl.constexpr, STAGES: gl.constexpr, DECODED: gl.constexpr,
                   DECODERS: gl.constexpr, DECODE_WARPS: gl.constexpr, DECODE_REGS: gl.constexpr,
                   LOADER: gl.constexpr, PACKED: gl.constexpr, FUSED: gl.constexpr,
                   num_warps: gl.constexpr):
    """out = x @ dequantize(W)^T (+ bias) for one [BM tokens, BN weight rows] tile and one K
    split; x_desc: TMA descriptor of x [M, K] bf16, box [BM, BK]; q_desc: of the codes
    [N, K/2] (PACKED: HopperWeight's [NP, Kp/2]), box [BN, BK/2]; s_ptr: scales [N, KS]
    (PACKED: [KS = Kp/32, NP], FUSED when every byte is <= 128). k_chunk: K per split, a
    multiple of BK."""
    BM: gl.constexpr = x_desc.block_type.shape[0]
    BK: gl.constexpr = x_desc.block_type.shape[1]
    BN: gl.constexpr = q_desc.block_type.shape[0]
    pid_m, pid_n, pid_k, tiles_n, k_lo, n_steps = tile_coords(M, N, K, k_chunk, BM, BN, BK,
                                                              GROUP_M)
    off_m = pid_m * BM
    off_n = pid_n * BN
    ws_tile(x_desc, q_desc, s_ptr, off_m, off_n, off_n, k_lo, n_steps, N, KS, NP, _epilogue,
            (bias_ptr, out_ptr, ws_ptr, lock_ptr, M, N, stride_om, off_m, off_n, pid_m, pid_n,
             pid_k, tiles_n), HAS_BIAS, SPLIT_K, STAGES, DECODED, DECODERS, DECODE_WARPS,
            DECODE_REGS, LOADER, PACKED, FUSED, num_warps)


@gluon.jit
def ws_tile(x_desc, q_desc, s_ptr, off_m, q_row, off_n, k_lo, n_steps, N, KS, NP,
            EPILOGUE: gl.constexpr, epilogue_args, HAS_BIAS: gl.constexpr, SPLIT_K: gl.constexpr,
            STAGES: gl.constexpr, DECODED: gl.constexpr, DECODERS: gl.constexpr,
            DECODE_WARPS: gl.constexpr, DECODE_REGS: gl.constexpr, LOADER: gl.constexpr,
            PACKED: gl.constexpr, FUSED: gl.constexpr, num_warps: gl.constexpr):
    """One [BM tokens, BN weight rows] tile over n_steps K steps from k_lo: x rows from off_m
    (x_desc), codes rows from q_row (q_desc), scales of weight rows off_n..; the consumer ends
    with EPILOGUE(acc [BN, BM] fp32, *epilogue_args, BN, BM, HAS_BIAS, SPLIT_K, num_warps).
    Shared by ws_gemm_kernel and the MoE's grouped kernels (kernels/ws_moe_kernel.py)."""
    BM: gl.constexpr = x_desc.block_type.shape[0]
    BK: gl.constexpr = x_desc.block_type.shape[1]
    BN: gl.constexpr = q_desc.block_type.shape[0]
    S: gl.constexpr = STAGES  # x + codes slots in flight
    D: gl.constexpr = DECODED  # decoded W tiles: how far the decoders may run ahead of the wgmma
    x_bufs = gl.allocate_shared_memory(gl.bfloat16, [S, BM, BK], x_desc.layout)
    q_bufs = gl.allocate_shared_memory(gl.uint8, [S, BN, BK // 2], q_desc.layout)
    w_bufs = gl.allocate_shared_memory(gl.bfloat16, [D, BN, BK],
                                       gl.NVMMASharedLayout.get_default_for([BN, BK], gl.bfloat16))
    s_bufs = gl.allocate_shared_memory(gl.uint8, [DECODERS * SCALE_CHUNK, BN, BK // 32],
                                       gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    x_ready = gl.allocate_shared_memory(gl.int64, [S, 1], mbarrier.MBarrierLayout())
    x_free = gl.allocate_shared_memory(gl.int64, [S, 1], mbarrier.MBarrierLayout())
    q_ready = gl.allocate_shared_memory(gl.int64, [S, 1], mbarrier.MBarrierLayout())
    q_free = gl.allocate_shared_memory(gl.int64, [S, 1], mbarrier.MBarrierLayout())
    decoded = gl.allocate_shared_memory(gl.int64, [D, 1], mbarrier.MBarrierLayout())
    w_free = gl.allocate_shared_memory(gl.int64, [D, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(S):
        mbarrier.init(x_ready.index(i), count=1)
        mbarrier.init(x_free.index(i), count=1)
        mbarrier.init(q_ready.index(i), count=1)
        mbarrier.init(q_free.index(i), count=1)
    for i in gl.static_range(D):
        mbarrier.init(decoded.index(i), count=1)
        mbarrier.init(w_free.index(i), count=1)

    # (argument tuples written inline: a tuple held in a variable loses its constexprs)
    if DECODERS == 2:  # two decoder partitions take alternate steps (with the loader warp)
        gl.warp_specialize([
            (_consumer, (x_desc, x_ready, x_free, decoded, w_free, x_bufs, w_bufs, off_m, k_lo,
                         n_steps, EPILOGUE, epilogue_args, BN, BM, BK, HAS_BIAS, SPLIT_K, LOADER, num_warps)),
            (_decoder, (s_ptr, q_desc, q_ready, q_free, decoded, w_free, q_bufs, w_bufs,
                        s_bufs, q_row, off_n, k_lo, n_steps, N, KS, NP, BN, BK, DECODE_WARPS,
                        LOADER, 0, 2, PACKED, FUSED)),
            (_decoder, (s_ptr, q_desc, q_ready, q_free, decoded, w_free, q_bufs, w_bufs,
                        s_bufs, q_row, off_n, k_lo, n_steps, N, KS, NP, BN, BK, DECODE_WARPS,
                        LOADER, 1, 2, PACKED, FUSED)),
            (_loader, (x_desc, q_desc, x_ready, x_free, q_ready, q_free, x_bufs, q_bufs, off_m,
                       q_row, k_lo, n_steps, BK)),
        ], [DECODE_WARPS, DECODE_WARPS, LOADER_WARPS], [DECODE_REGS, DECODE_REGS, 24])
    elif LOADER:
        gl.warp_specialize([
            (_consumer, (x_desc, x_ready, x_free, decoded, w_free, x_bufs, w_bufs, off_m, k_lo,
                         n_steps, EPILOGUE, epilogue_args, BN, BM, BK, HAS_BIAS, SPLIT_K, LOADER, num_warps)),
            (_decoder, (s_ptr, q_desc, q_ready, q_free, decoded, w_free, q_bufs, w_bufs,
                        s_bufs, q_row, off_n, k_lo, n_steps, N, KS, NP, BN, BK, DECODE_WARPS,
                        LOADER, 0, 1, PACKED, FUSED)),
            (_loader, (x_desc, q_desc, x_ready, x_free, q_ready, q_free, x_bufs, q_bufs, off_m,
                       q_row, k_lo, n_steps, BK)),
        ], [DECODE_WARPS, LOADER_WARPS], [DECODE_REGS, 24])
    else:  # the consumer loads x and the decoder its codes: no loader warp to pad to a group
        gl.warp_specialize([
            (_consumer, (x_desc, x_ready, x_free, decoded, w_free, x_bufs, w_bufs, off_m, k_lo,
                         n_steps, EPILOGUE, epilogue_args, BN, BM, BK, HAS_BIAS, SPLIT_K, LOADER, num_warps)),
            (_decoder, (s_ptr, q_desc, q_ready, q_free, decoded, w_free, q_bufs, w_bufs,
                        s_bufs, q_row, off_n, k_lo, n_steps, N, KS, NP, BN, BK, DECODE_WARPS,
                        LOADER, 0, 1, PACKED, FUSED)),
        ], [DECODE_WARPS], [DECODE_REGS])
