"""Decode GEMV for plain bf16 weights: y = residual + (x @ W.T + bias) for a few rows of x.

Reference twin: `dense_linear_reference` (below, float32 torch math).

For GPT-OSS decode at batch 1: the attention projections (qkv 2880->5120, out 4096->2880)
and the unembedding (2880->201088) are bf16 and ~3 GB of the ~5 GB a token reads. The work
is one pass over W, so the kernel is a streaming read; two inner products:

- FMA (M = 1): a program owns BN rows x a K chunk, reads 16-byte runs of 8 weights along K
  (a warp's lanes cover contiguous bytes of a row), multiplies by x in fp32 and keeps a
  [BN, BK] fp32 accumulator, summed along K once at the end. The next step's weights are
  loaded before this step's math (register double-buffering: Triton does not pipeline
  loads that feed no dot). With EARLY_W the first step's weights are requested before
  `wait_for_inputs()` (PDL), so they stream while the previous kernel drains; that is only
  correct when no kernel just before this one on the stream writes W (inference weights),
  hence the `weight_ready` argument.
- DOT (M = 2..16, or M = 1 by config): acc [BN, 16] += W tile [BN, BK] @ x tile.T [BK, 16] on
  the tensor cores (x padded to 16 rows with zeros), loads pipelined by Triton (num_stages).
  The MMA work is 16x the FMA's but still far under the memory time.

Both accumulate in fp32 and round once to bf16 after adding bias and residual, so the result
differs from `F.linear(x, W, bias) + residual` (two bf16 roundings, and cuBLAS's own order)
by at most that one rounding plus fp32 summation-order noise. Fixed tiles fix the summation
order: results are bit-for-bit reproducible for one config. Split-K partials (fp32) are
combined by the last split to arrive, in split order (an arrival counter per row tile, as in
kernels/linear.py); no float atomics. No host syncs; outputs come from torch.empty, so calls
can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .linear import _LOCK_SIZE, _sm_count, arrival_counters
from .pdl import launch_options, release_dependents, wait_for_inputs
from .unpack import INTERPRET, dot_bf16

MAX_M = 16  # the DOT path pads x to 16 rows (the smallest tensor-core tile)


@triton.jit(do_not_specialize=["M"])
def _dense_gemv_kernel(x_ptr, w_ptr, bias_ptr, res_ptr, out_ptr, ws_ptr, lock_ptr,
                       M, N, KQ, stride_xm, stride_rm, k_chunk,
                       HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, SPLIT_K: tl.constexpr,
                       DOT: tl.constexpr, EARLY_W: tl.constexpr,
                       BN: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr):
    """out [M, N] = res + (x [M, K] @ w [N, K].T + bias), K = 8 * KQ (rows 16-byte aligned).

    DOT: BM = 16 (x rows past M read as zeros); FMA: BM = 1. k_chunk: a multiple of BK."""
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    K = KQ * 8  # written so that Triton knows every row starts 16 bytes after a multiple of 16
    rn = pid_n * BN + tl.arange(0, BN)
    rn_c = tl.minimum(rn, N - 1)  # rows past N re-read row N - 1 (never stored): no row mask
    rk = tl.arange(0, BK)
    k_start = pid_k * k_chunk
    k_stop = tl.minimum(k_start + k_chunk, K)
    w_ptrs = w_ptr + rn_c[:, None].to(tl.int64) * K + rk[None, :]  # [BN, BK]
    if DOT:
        wait_for_inputs()  # launched early (PDL): nothing is read or written before this
        rm = tl.arange(0, BM)
        xt_ptrs = x_ptr + rm[None, :].to(tl.int64) * stride_xm + rk[:, None]  # [BK, BM]
        acc = tl.zeros([BN, BM], dtype=tl.float32)
        for k0 in range(k_start, k_stop, BK):
            w = tl.load(w_ptrs + k0, mask=k0 + rk[None, :] < k_stop, other=0.0)
            xt = tl.load(xt_ptrs + k0, mask=(rm[None, :] < M) & (k0 + rk[:, None] < k_stop),
                         other=0.0)
            acc = dot_bf16(w, xt, acc)
        total = acc  # [BN, BM]
    else:
        # x pointers in the weights' full tile shape, so x's load shares their layout (repeats
        # across rows hit L1) instead of a layout conversion through shared memory each step
        x_ptrs = x_ptr + (rk[None, :] + 0 * rn[:, None])
        w0 = rk[None, :] + 0 * rn[:, None]
        if EARLY_W:  # W is not written by the kernel before: stream it during its tail
            w = tl.load(w_ptrs + k_start, mask=w0 + k_start < k_stop, other=0.0)
            wait_for_inputs()
        else:
            wait_for_inputs()
            w = tl.load(w_ptrs + k_start, mask=w0 + k_start < k_stop, other=0.0)
        acc = tl.zeros([BN, BK], dtype=tl.float32)
        for k0 in range(k_start, k_stop, BK):
            k1 = k0 + BK
            w_next = tl.load(w_ptrs + k1, mask=w0 + k1 < k_stop, other=0.0)
            xv = tl.load(x_ptrs + k0, mask=w0 + k0 < k_stop, other=0.0)
            acc += w.to(tl.float32) * xv.to(tl.float32)
            w = w_next
        total = tl.sum(acc, axis=1)[:, None]  # [BN, 1]
    release_dependents()

    rm = tl.arange(0, BM)
    out_mask = (rn[:, None] < N) & (rm[None, :] < M)
    out_off = rm[None, :].to(tl.int64) * N + rn[:, None]  # out is a fresh contiguous [M, N]
    if SPLIT_K > 1:
        # deterministic split-K: every split stores its fp32 partial; the last to arrive sums
        # them in split order (0, 1, ...) and finishes the tile
        tl.store(ws_ptr + pid_k * M * N + out_off, total, mask=out_mask)
        tl.debug_barrier()
        arrived = tl.atomic_add(lock_ptr + pid_n, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            total = tl.zeros([BN, BM], dtype=tl.float32)
            for i in tl.static_range(SPLIT_K):
                total += tl.load(ws_ptr + i * M * N + out_off, mask=out_mask, other=0.0,
                                 cache_modifier=".cg")
            _finish(total, rn_c, rm, out_off, out_mask, bias_ptr, res_ptr, out_ptr, stride_rm,
                    HAS_BIAS, HAS_RES)
            tl.atomic_xchg(lock_ptr + pid_n, 0, sem="relaxed", scope="gpu")  # ready again
    else:
        _finish(total, rn_c, rm, out_off, out_mask, bias_ptr, res_ptr, out_ptr, stride_rm,
                HAS_BIAS, HAS_RES)


@triton.jit
def _finish(total, rn_c, rm, out_off, out_mask, bias_ptr, res_ptr, out_ptr, stride_rm,
            HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr):
    """Store res + (total + bias) [BN, BM], rounded once to the output dtype."""
    if HAS_BIAS:
        total += tl.load(bias_ptr + rn_c).to(tl.float32)[:, None]
    if HAS_RES:
        res = tl.load(res_ptr + rm[None, :].to(tl.int64) * stride_rm + rn_c[:, None],
                      mask=out_mask, other=0.0)
        total += res.to(tl.float32)
    tl.store(out_ptr + out_off, total.to(out_ptr.dtype.element_ty), mask=out_mask)


# ---- configs ----------------------------------------------------------------------------

# Per-shape configs, (N, K, M bucket) -> config; M buckets: 1, 2 (M = 2..8), 16 (M = 9..16).
# The GPT-OSS shapes start from the reasoning in dense_config (not yet measured); update this
# table from `benchmarks/dense_gemv_device.py`, whose sweep prints rows in this form.
CONFIGS: dict[tuple[int, int, int], dict] = {}


def _bucket(m: int) -> int:
    return 1 if m == 1 else (2 if m <= 8 else 16)


def dense_config(m: int, n: int, k: int, sm_count: int = 132) -> dict:
    """The config dense_linear uses for an [m, k] x [n, k] product.

    Reasoning (H100, 132 SMs, ~3 TB/s): the kernel must keep ~20-30 KB of weight reads in
    flight per SM. M = 1 takes the FMA path with 16 rows x 256 elements (8 KB) per step and
    4 warps, one step loaded ahead (16 KB a program) and ~4-5 programs resident per SM, so K
    is split until there are about 4 programs per SM (qkv: 320 row tiles x 2 splits of ~6
    steps; out: 180 x 3 of 5-6 steps; the unembedding's 12,568 tiles need no split). M >= 2
    takes tensor cores on 64-row tiles, 128-wide K steps, 3 stages (16 KB a stage, ~3
    programs per SM), split until ~3 programs per SM (qkv 80 tiles x 4, out 45 x 8)."""
    cfg = CONFIGS.get((n, k, _bucket(m)))
    if cfg is not None:
        return dict(cfg)
    if m == 1:
        cfg = dict(DOT=False, BN=16, BK=256, num_warps=4, num_stages=1, per_sm=4)
    else:
        cfg = dict(DOT=True, BN=64, BK=128, num_warps=4, num_stages=3, per_sm=3)
    tiles = -(-n // cfg["BN"])
    steps = -(-k // cfg["BK"])
    split = max(1, min(steps, round(cfg.pop("per_sm") * sm_count / tiles)))
    cfg["SPLIT_K"] = split
    return cfg


# ---- host side --------------------------------------------------------------------------

def use_dense_gemv(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether dense_linear applies (else use F.linear): bf16 x [..., K] with at most 16 rows
    and a contiguous bf16 weight [N, K], K a multiple of 8, on CUDA (or the interpreter)."""
    if not (x.is_cuda or INTERPRET.value) or x.device != weight.device:
        return False
    if x.dtype != torch.bfloat16 or weight.dtype != torch.bfloat16 or weight.dim() != 2:
        return False
    k = weight.shape[1]
    if x.dim() < 1 or x.shape[-1] != k or k == 0 or k % 8 or weight.shape[0] == 0:
        return False
    return 0 < x.numel() // k <= MAX_M and x.is_contiguous() and weight.is_contiguous()


def dense_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 residual: torch.Tensor | None = None, *, weight_ready: bool = False,
                 config: dict | None = None) -> torch.Tensor:
    """residual + (x @ weight.T + bias) for bf16 x [..., K] (at most 16 rows), weight [N, K].

    Accumulates in fp32 and rounds once to bf16 at the end; see the module docstring for how
    that differs from F.linear followed by an add. weight_ready=True promises that the kernel
    launched just before this one on the stream does not write `weight` (true of inference
    weights), which lets the M = 1 kernel start reading it early. config: a dense_config-style
    dict (benchmarks); None picks one per shape."""
    _check(x, weight, bias, residual)
    n, k = weight.shape
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    dev = x.device
    cfg = dict(config) if config is not None else dense_config(m, n, k, _sm_count(dev))
    split, bn, bk = cfg.pop("SPLIT_K"), cfg["BN"], cfg["BK"]
    dot = cfg.pop("DOT")
    if not dot and m != 1:
        raise ValueError(f"the FMA path takes one row of x, got {m} (use DOT=True)")
    early = cfg.pop("EARLY_W", True) and weight_ready and not dot
    k_chunk = _cdiv(_cdiv(k, bk), split) * bk  # whole steps per split
    tiles = _cdiv(n, bn)
    if split > 1 and tiles > _LOCK_SIZE:
        raise ValueError(f"split-K needs {tiles} row-tile counters, more than {_LOCK_SIZE}")
    out = torch.empty(m, n, dtype=x.dtype, device=dev)
    ws = torch.empty(split, m, n, dtype=torch.float32, device=dev) if split > 1 else out
    locks = arrival_counters(dev) if split > 1 else out
    res2 = residual.reshape(m, n) if residual is not None else None
    _dense_gemv_kernel[(tiles, split)](
        x2, weight, bias if bias is not None else out, res2 if res2 is not None else out,
        out, ws, locks, m, n, k // 8, x2.stride(0), res2.stride(0) if res2 is not None else n,
        k_chunk, HAS_BIAS=bias is not None, HAS_RES=residual is not None, SPLIT_K=split,
        DOT=dot, EARLY_W=early, BM=MAX_M if dot else 1, **cfg, **launch_options(dev))
    return out.reshape(*x.shape[:-1], n)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _check(x, weight, bias, residual) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError("dense_linear takes tensors x and weight")
    if not use_dense_gemv(x, weight):
        raise ValueError(
            f"dense_linear needs bf16 x [..., K] with 1..{MAX_M} rows and a contiguous bf16 "
            f"weight [N, K] (K a multiple of 8) on one CUDA device (or TRITON_INTERPRET=1); "
            f"got x {tuple(x.shape)} {x.dtype} on {x.device}, weight {tuple(weight.shape)} "
            f"{weight.dtype} on {weight.device} (contiguous: {x.is_contiguous()}, "
            f"{weight.is_contiguous()}); use F.linear otherwise (use_dense_gemv says which)")
    n = weight.shape[0]
    if bias is not None and (bias.shape != (n,) or bias.device != x.device
                             or bias.dtype != torch.bfloat16 or not bias.is_contiguous()):
        raise ValueError(f"bias must be a contiguous bf16 [{n}] on {x.device}, got "
                         f"{tuple(bias.shape)} {bias.dtype} on {bias.device}")
    want = (*x.shape[:-1], n)
    if residual is not None and (tuple(residual.shape) != want or residual.device != x.device
                                 or residual.dtype != torch.bfloat16
                                 or residual.stride(-1) != 1):
        raise ValueError(f"residual must be bf16 {want} with unit stride along N on "
                         f"{x.device}, got {tuple(residual.shape)} {residual.dtype} on "
                         f"{residual.device}")


def dense_linear_reference(x: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor | None = None,
                           residual: torch.Tensor | None = None) -> torch.Tensor:
    """Twin of dense_linear in float32 torch math: residual + (x @ weight.T + bias), rounded
    once to x's dtype."""
    y = x.float() @ weight.float().T
    if bias is not None:
        y = y + bias.float()
    if residual is not None:
        y = residual.float() + y
    return y.to(x.dtype)
