"""W4A16 GEMM: y = x @ W.T + bias with W an MXFP4 weight [N, K], in one Triton kernel.

Reference twin: `mxfp4.ops.linear(..., backend="reference")` (x @ dequantize(W).T in fp32).

The kernel computes the transposed product y.T = W @ x.T ("swap AB"): the weight tile is the
MMA's A operand, so it is decoded from packed bytes straight into registers (no shared-memory
round trip for the bf16 weights), while the x tile is the B operand streamed into shared memory
by the software pipeline. Scales are applied in bf16 (exact: powers of two), products are
accumulated in fp32 by the tensor cores.

Decode (small M): a tile of BN weight rows x all of BM <= 64 activations, with split-K so that
every SM streams weights; each split writes an fp32 partial, and the last split of a tile to
finish (an atomic counter) sums the partials in a fixed order, adds the bias and writes y, so
the result is deterministic. Prefill (large M): big BM tiles, no split, grouped tile order;
bf16 inputs from kernels/prefill.PREFILL_MIN_M rows on decode W once and use cuBLAS instead.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from triton import knobs

from ..layouts import HopperWeight
from . import prefill
from .gemv import _gemv_kernel, gemv_config
from . import mma_gemv
from .mma_gemv import _mma_gemv_kernel, mma_gemv_config
from .pdl import launch_options, release_dependents, wait_for_inputs
from .unpack import dot_x, grouped_tile, hopper_dot, load_mx_tile


@triton.jit(do_not_specialize=["M"])
def _linear_kernel(x_ptr, w_ptr, s_ptr, bias_ptr, out_ptr, ws_ptr, lock_ptr,
                   M, N, K, KP, NP, stride_xm, stride_om, k_chunk, ws_stride,
                   HOPPER: tl.constexpr, FUSED: tl.constexpr, HAS_BIAS: tl.constexpr,
                   X_SPLIT: tl.constexpr, BS: tl.constexpr, SB: tl.constexpr,
                   MASK_K: tl.constexpr, RAGGED_K: tl.constexpr, SWAP: tl.constexpr,
                   SPLIT_K: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
                   GROUP_N: tl.constexpr, EARLY_RELEASE: tl.constexpr):
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    # tile order: groups of GROUP_N weight tiles sweep all x tiles, so weights stay in L2
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    tiles_n = tl.cdiv(N, BN)
    tiles_m = tl.cdiv(M, BM)
    pid_n, pid_m = grouped_tile(pid, tiles_n, tiles_m, GROUP_N)

    rn = pid_n * BN + tl.arange(0, BN)
    rm = pid_m * BM + tl.arange(0, BM)
    rn_c = tl.minimum(rn, N - 1).to(tl.int64)  # clamped rows: loads stay in bounds, unmasked
    x_cols = x_ptr + rm.to(tl.int64)[None, :] * stride_xm  # x rows >= M are masked: never read
    m_ok = rm < M
    k_start = pid_k * k_chunk
    k_stop = tl.minimum(k_start + k_chunk, KP)  # whole tiles unless MASK_K (plain layout only)
    if SWAP:  # y.T tile = W tile @ x.T tile: weights are the MMA's A operand, from registers
        acc = tl.zeros([BN, BM], dtype=tl.float32)
    else:  # y tile = x tile @ W tile.T: x is A (shared memory), the decoded weights B
        acc = tl.zeros([BM, BN], dtype=tl.float32)
    if HOPPER:
        # HopperWeight: rows padded to NP (no clamp needed), scales transposed [KP/32, NP]
        w_rows = w_ptr + rn.to(tl.int64)[:, None] * (KP // 2)
        acc = hopper_dot(acc, w_rows, s_ptr + rn[None, :], x_cols, m_ok, k_start, k_stop, K, NP,
                         FUSED, X_SPLIT, SWAP, BN, BK, RAGGED_K)
    else:
        # plain MXTensor bytes [N, K/2]: low nibble = element 2j, high nibble = element 2j + 1
        w_rows = w_ptr + rn_c[:, None] * (KP // 2)
        s_rows = s_ptr + rn_c[:, None] * (KP // BS)
        for k0 in range(k_start, k_stop, BK):
            w = load_mx_tile(w_rows, s_rows, k0, KP, BN, BK, BS, SB, MASK_K)
            rk = k0 + tl.arange(0, BK)
            if SWAP:
                xt = tl.load(x_cols + rk[:, None], mask=m_ok[None, :] & (rk < K)[:, None], other=0.0)
            else:
                xt = tl.load(tl.trans(x_cols) + rk[None, :], mask=m_ok[:, None] & (rk < K)[None, :],
                             other=0.0)
            acc = dot_x(w, xt, acc, X_SPLIT, SWAP)
    if EARLY_RELEASE:  # the next kernel's programs may be placed during the epilogue
        release_dependents()
    if not SWAP:
        acc = tl.trans(acc)  # one shuffle per tile, then the epilogue is shared

    out_mask = (rn[:, None] < N) & (rm[None, :] < M)
    out_ptrs = out_ptr + rm[None, :].to(tl.int64) * stride_om + rn[:, None]
    if SPLIT_K == 1:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + rn_c).to(tl.float32)[:, None]
        tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        # deterministic split-K: partials to the workspace, the last split to arrive reduces
        ws_tile = ws_ptr + rm[None, :].to(tl.int64) * N + rn[:, None]
        tl.store(ws_tile + pid_k * ws_stride, acc, mask=out_mask)
        tl.debug_barrier()
        tile = pid_m * tiles_n + pid_n
        arrived = tl.atomic_add(lock_ptr + tile, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            total = tl.zeros([BN, BM], dtype=tl.float32)
            for i in tl.static_range(SPLIT_K):
                total += tl.load(ws_tile + i * ws_stride, mask=out_mask, other=0.0,
                                 cache_modifier=".cg")
            if HAS_BIAS:
                total += tl.load(bias_ptr + rn_c).to(tl.float32)[:, None]
            tl.store(out_ptrs, total.to(out_ptr.dtype.element_ty), mask=out_mask)
            tl.atomic_xchg(lock_ptr + tile, 0, sem="relaxed", scope="gpu")  # ready for the next call


# ---- host side ------------------------------------------------------------------------

_SM_COUNT: dict[int, int] = {}
_COUNTERS: dict[tuple, tuple[torch.Tensor, dict]] = {}  # device -> (arena, stream -> counters)
_LOCK_SIZE = 1 << 16  # counters per stream
_COUNTER_STREAMS = 16  # streams with counters of their own (4 MB per device)


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 132
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


def arrival_counters(device: torch.device) -> torch.Tensor:
    """Zeroed counters for "last program to arrive" reductions (split-K here, the MoE decode's
    routing); whoever reduces resets its counter, so they stay zero between kernels.

    One set per stream: kernels on one stream run in order, while two calls on concurrent
    streams sharing counters would each see the other's arrivals. The sets are rows of one
    arena made outside any CUDA-graph capture, so a capture on a new stream (as
    torch.cuda.graph does) needs no zero-fill of its own; a call with no arena yet, or on
    more streams than the arena has rows, gets fresh zeroed counters (a memset each time)."""
    index = device.index
    if device.type == "cuda" and index is None:
        index = torch.cuda.current_device()
    entry = _COUNTERS.get((device.type, index))
    if entry is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return torch.zeros(_LOCK_SIZE, dtype=torch.int32, device=device)  # the graph's own
        arena = torch.zeros(_COUNTER_STREAMS, _LOCK_SIZE, dtype=torch.int32, device=device)
        entry = _COUNTERS[(device.type, index)] = (arena, {})
    arena, rows = entry
    stream = _raw_stream(index) if device.type == "cuda" else 0
    if stream not in rows:
        if len(rows) == _COUNTER_STREAMS:
            return torch.zeros(_LOCK_SIZE, dtype=torch.int32, device=device)
        rows[stream] = arena[len(rows)]
    return rows[stream]


def pick_config(m: int, n: int, kp: int, sm_count: int, hopper: bool = True) -> dict:
    """Tile sizes, warps, pipeline depth and split-K for an [m, k] x [n, k] product.

    kp is K padded to the weight layout's granularity (64 for a HopperWeight, whose K loop
    ends with 64-wide steps when BK does not divide it, so no weight load needs a mask).
    hopper: the weight is a HopperWeight (a plain MXTensor keeps 128 x 128 tiles above M = 64).
    """
    if m <= 64:
        # decode: every SM streams weights, BK = 256 (K = 2880 ends in 64-wide steps). Up to
        # 16 rows of x, or short K (< 4096), runs one warpgroup per 64-row tile, so that
        # several CTAs share an SM. Split K while the CTAs fit in ~1.4 waves of 8-warp CTAs
        # and each split keeps >= 640 elements of K. Measured on an H100
        # (benchmarks/breakdown.py at 3fcbdde tiles): split 4 for
        # 2880 -> 2880, 2880 -> 5760 and 14336 -> 4096, none for 4096 -> 14336; at M = 1 the
        # 4096-wide shapes 19.5 / 19.5 us with 64-row tiles vs 20.5 / 20.7 with 128-row ones,
        # while M = 64 there wants 128-row tiles of 8 warps (29.2 vs 36.5 us).
        bm = max(16, triton.next_power_of_2(m))
        short = kp < 4096 or m <= 16
        cfg = dict(BN=64 if short else 128, BM=bm, BK=256, SPLIT_K=1, GROUP_N=1, SWAP=True,
                   num_warps=4 if short else 8, num_stages=3 if short else 4)
    elif m < 512 and hopper:
        # (tenth session, benchmarks/mid_m_sweep.py, H100) one warpgroup per 64-row tile, as
        # in the MoE, so that several CTAs per SM overlap one's decode with another's MMAs:
        # 64 tokens, K steps of 256 and two K splits up to M = 128 and on long K; above, 128
        # tokens (each weight tile is decoded M / BM times) in K steps of 64. Against the
        # 128 x 128 8-warp tiles, e.g. 14336 -> 4096 at M = 128 / 256 / 448: 51 / 98 / 168
        # vs 82 / 121 / 222 us; 4096 -> 14336 at M = 96: 60 vs 84; 2880 -> 5760 at M = 256: 35.5
        # vs 57 us. (A plain MXTensor, decoded by load_mx_tile, lost on 4096 -> 14336: 140
        # vs 100 us at M = 256.)
        few = m <= 128 or kp >= 8192
        cfg = dict(BN=64, BM=64 if few else 128, BK=256 if few else 64, SPLIT_K=1, GROUP_N=8,
                   SWAP=True, num_warps=4, num_stages=3)
        if few:  # two K splits, not the CTA budget below (four lost on 2880 x 2880)
            cfg["SPLIT_K"] = 2 if kp >= 1280 else 1
            return cfg
    else:
        # larger M (bf16 x takes the prefill path from 512) and plain MXTensors: 128 x 128
        # tiles, BK = 64 (a plain MXTensor's BK is refitted in linear()), split K while the
        # tiles are fewer than the SMs
        cfg = dict(BN=128, BM=128, BK=64, SPLIT_K=1, GROUP_N=8, SWAP=True, num_warps=8,
                   num_stages=4)
    tiles = triton.cdiv(n, cfg["BN"]) * triton.cdiv(m, cfg["BM"])
    ctas = 1.4 * sm_count * 8 // cfg["num_warps"]
    while tiles * cfg["SPLIT_K"] * 2 <= ctas and kp // (cfg["SPLIT_K"] * 2) >= 640:
        cfg["SPLIT_K"] *= 2
    return cfg


def linear(x: torch.Tensor, w, bias: torch.Tensor | None = None, config: dict | None = None) -> torch.Tensor:
    """x [..., K] (bf16/fp16/fp32) times an MXTensor or HopperWeight [N, K]; returns x's dtype.

    fp16/fp32 inputs go through the bf16 tensor cores as two terms (hi + lo), twice the MMAs.
    Arguments are assumed checked by mxfp4.ops.linear.
    """
    n, k = w.shape
    hopper = isinstance(w, HopperWeight)
    codes, scales = w.codes, w.scales
    flat = x.dim() == 2  # the common case skips two reshapes (about 1 us each on the host)
    x2 = x if flat else x.reshape(-1, k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m = x2.shape[0]
    dev = x.device
    if config is None and prefill.use_prefill(m, x.dtype):
        out = prefill.linear(x2, w, bias)
    else:
        out = torch.empty(m, n, dtype=x.dtype, device=dev)  # ints, not a tuple: ~1 us less
        if m:
            _run(x2, w, codes, scales, bias, out, m, n, k, hopper, dev, config)
    return out if flat else out.reshape(*x.shape[:-1], n)


def _run(x2, w, codes, scales, bias, out, m, n, k, hopper, dev, config) -> None:
    """Launch the kernel (or the GEMV) for one checked, non-empty product into out."""
    key = (m, n, k, codes.shape, hopper, w.block_size, hopper and w.max_scale <= 128, x2.dtype,
           bias is not None, x2.stride(0), dev)
    plan = _PLANS.get(key) if config is None else None
    if plan is None:
        plan = _plan(m, n, k, w, hopper, x2, bias, config)
        if config is None:
            _PLANS[key] = plan
    tail, split = plan[1], plan[3]
    if split > 1:
        ws = torch.empty(split, m, n, dtype=torch.float32, device=dev)
        locks = arrival_counters(dev)
    else:
        ws = locks = out
    _launch(plan, (x2, codes, scales, bias if bias is not None else out, out, ws, locks, *tail))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _plan(m, n, k, w, hopper, x2, bias, config):
    """(grid, scalar args, constexprs + options, split) for one problem; cached per shape."""
    kp, np_ = w.codes.shape[1] * 2, w.codes.shape[0]
    if config is None and hopper:
        config = decode_config(m, n, k, kp, x2.dtype, w.max_scale, _sm_count(x2.device))
    if config is not None and config.get("GEMV"):
        return _plan_gemv(m, n, k, w, hopper, x2, bias, config)
    if config is not None and config.get("MMA_GEMV"):
        return _plan_mma_gemv(m, n, k, w, hopper, x2, bias, config)
    cfg = dict(config or pick_config(m, n, kp, _sm_count(x2.device), hopper))
    cfg.setdefault("SWAP", True)
    if not hopper:  # plain layout: any block size; a partial last tile is masked
        while cfg["BK"] > 16 and kp % cfg["BK"]:
            cfg["BK"] //= 2
    split, bk = cfg["SPLIT_K"], cfg["BK"]
    if hopper and (bk % 64 or np_ % cfg["BN"]):
        raise ValueError(f"tile BK={bk}, BN={cfg['BN']} does not fit the weight ({np_} x {kp})")
    # HopperWeight: splits of whole 64-groups (hopper_dot ends a split with 64-wide steps)
    k_chunk = _cdiv(kp // 64, split) * 64 if hopper else _cdiv(_cdiv(kp, bk), split) * bk
    grid = (_cdiv(n, cfg["BN"]) * _cdiv(m, cfg["BM"]), split)
    meta = dict(launch_options(x2.device), HOPPER=hopper, FUSED=hopper and w.max_scale <= 128,
                HAS_BIAS=bias is not None, X_SPLIT=x2.dtype != torch.bfloat16, BS=w.block_size,
                SB=min(w.block_size, bk), MASK_K=not hopper and kp % bk != 0,
                RAGGED_K=hopper and k % 64 != 0,
                # PDL (kernels/pdl.py): let the next kernel in early only from 8-warp tiles;
                # measured on an H100 (benchmarks/breakdown.py at 3fcbdde pdl): M=64 27.5 vs 28.0 and
                # 29.6 vs 30.7 us, while 4-warp split-K tiles on long K lost (14336->4096
                # M=1 20.8 vs 18.5 us releasing at exit)
                EARLY_RELEASE=cfg["num_warps"] >= 8)
    return _finish(_linear_kernel, grid, meta, cfg, (m, n, k, kp, np_, x2.stride(0), k_chunk))


def _plan_gemv(m, n, k, w, hopper, x2, bias, config):
    """The plan of the CUDA-core GEMV (kernels/gemv.py): HopperWeight only, M <= BM."""
    kp, np_ = w.codes.shape[1] * 2, w.codes.shape[0]
    cfg = {c: v for c, v in config.items() if c != "GEMV"}
    split, bk, bn = cfg["SPLIT_K"], cfg["BK"], cfg["BN"]
    if not hopper or m > cfg["BM"] or bk % 64 or np_ % bn:
        raise ValueError(f"the GEMV needs a HopperWeight, M <= BM and tiles dividing the weight "
                         f"(M={m}, BM={cfg['BM']}, BK={bk}, BN={bn}, weight {np_} x {kp})")
    k_chunk = _cdiv(_cdiv(kp, bk), split) * bk
    grid = (_cdiv(n, bn), split)
    meta = dict(launch_options(x2.device), HAS_BIAS=bias is not None, MASK_K=k % 64 != 0)
    return _finish(_gemv_kernel, grid, meta, cfg, (m, n, k, kp, np_, x2.stride(0), k_chunk))


def _plan_mma_gemv(m, n, k, w, hopper, x2, bias, config):
    """The plan of the tensor-core GEMV (kernels/mma_gemv.py): bf16 x with M <= 16 and a
    HopperWeight whose scale bytes are all <= 128."""
    kp, np_ = w.codes.shape[1] * 2, w.codes.shape[0]
    cfg = {c: v for c, v in config.items() if c != "MMA_GEMV"}
    split = cfg["SPLIT_K"]
    if (not hopper or w.max_scale > 128 or x2.dtype != torch.bfloat16 or m > 16
            or (m > 8 and not cfg["TWO_N"]) or x2.stride(0) % 2):
        raise ValueError("the MMA GEMV needs bf16 x with M <= 16 (TWO_N above 8) and a "
                         "HopperWeight with scale bytes <= 128")
    k_chunk = _cdiv(_cdiv(kp, 128), split) * 128
    grid = (np_ // 16, split)  # HopperWeight rows are padded to whole tiles (layouts.ROW_PAD)
    meta = dict(launch_options(x2.device), HAS_BIAS=bias is not None)
    return _finish(_mma_gemv_kernel, grid, meta, cfg, (m, n, k, kp, np_, x2.stride(0), k_chunk))


def _finish(kernel, grid, meta, cfg, sizes) -> list:
    """The plan [grid, scalar args, constexprs + options, split, constexpr values, compiled
    kernel (set at first launch), kernel] shared by the three kernels' planners. The config
    may also set launch options (num_warps, launch_pdl, ...); a split-K grid needs one
    arrival counter per output tile."""
    split = grid[1]
    if split > 1 and grid[0] > _LOCK_SIZE:
        raise ValueError(f"split-K needs {grid[0]} tile counters, more than {_LOCK_SIZE}")
    meta.update(cfg)
    m, n, k, kp, np_, stride_x, k_chunk = sizes
    tail = (m, n, k, kp, np_, stride_x, n, k_chunk, m * n)
    consts = tuple(meta[c] for c in kernel.arg_names if c not in _RUNTIME_ARGS)
    return [grid, tail, meta, split, consts, None, kernel]


# A plan keeps the compiled kernel of its first launch; later calls with 16-byte aligned
# tensors (the specialization Triton compiled for) skip Triton's argument binding, tens of
# microseconds of Python, and call the compiled launcher directly.
_PLANS: dict = {}
# the arguments every kernel of a plan takes at run time (the rest are its constexprs)
_RUNTIME_ARGS = ("x_ptr", "w_ptr", "s_ptr", "bias_ptr", "out_ptr", "ws_ptr", "lock_ptr", "M",
                 "N", "K", "KP", "NP", "stride_xm", "stride_om", "k_chunk", "ws_stride")
# Where a HopperWeight takes the CUDA-core GEMV (kernels/gemv.py) instead of the tensor-core
# kernel when the tensor-core GEMV does not apply (fp16 / fp32 x), from `mxfp4 bench kernels` on an H100 (docs/kernels.md, "Decode GEMV"): one row of x
# and weights up to ~10 M elements (2880x2880: 7.7 vs 7.9 us). Since the tensor-core kernel's
# 64-wide K tail steps it wins from 2880x5760 on (9.8 vs 10.3 us; 4096x14336: 19.1 vs 29.5),
# and every extra row of x costs the GEMV a full FMA pass (M = 2 already loses everywhere).
GEMV_MAX_M = 1
GEMV_MAX_WEIGHTS = 10_000_000


def decode_config(m: int, n: int, k: int, kp: int, dtype: torch.dtype, max_scale: int,
                  sm_count: int) -> dict | None:
    """The GEMV configuration mxfp4.linear uses for a HopperWeight product, or None for the
    tiled tensor-core kernel (pick_config)."""
    if use_mma_gemv(m, n, k, dtype, max_scale):
        return mma_gemv_config(m, n, kp, sm_count)
    if use_gemv(m, n, k):
        return gemv_config(m, n, kp, sm_count)
    return None


def use_mma_gemv(m: int, n: int, k: int, dtype: torch.dtype, max_scale: int) -> bool:
    """Whether mxfp4.linear runs an [m, k] x HopperWeight [n, k] product on the tensor-core
    GEMV (kernels/mma_gemv.py): bf16 x, few rows, every scale byte <= 128."""
    if dtype != torch.bfloat16 or max_scale > 128:
        return False
    return m <= mma_gemv.MAX_M or (m <= mma_gemv.MAX_M_TWO_N and n * k <= mma_gemv.MAX_WEIGHTS_TWO_N)


def use_gemv(m: int, n: int, k: int) -> bool:
    """Whether mxfp4.linear runs an [m, k] x HopperWeight [n, k] product on the GEMV."""
    return m <= GEMV_MAX_M and n * k <= GEMV_MAX_WEIGHTS


def _launch(plan, args) -> None:
    grid, kernel = plan[0], plan[5]
    # x, codes, scales, bias: out/ws/locks come from the caching allocator (512-byte aligned)
    x2, codes, scales, bias = args[:4]
    aligned = (x2.data_ptr() | codes.data_ptr() | scales.data_ptr() | bias.data_ptr()) % 16 == 0
    if kernel is None or not aligned:
        kernel = plan[6][grid](*args, **plan[2])
        if aligned and not _interpreting():
            plan[5] = kernel
        return
    # the raw current stream of the tensors' device, read the way Triton's driver reads it
    stream = _raw_stream(x2.get_device())
    hooks = knobs.runtime
    kernel.run(grid[0], grid[1], 1, stream, kernel.function, kernel.packed_metadata, None,
               hooks.launch_enter_hook, hooks.launch_exit_hook, *args, *plan[4])


_GET_RAW_STREAM = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _raw_stream(index: int) -> int:
    if _GET_RAW_STREAM is not None:
        return _GET_RAW_STREAM(index)
    return torch.cuda.current_stream(index).cuda_stream


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"
