"""Attention of one new token per row over the KV cache, with a sink logit per head (decode).

Reference twin: `mxfp4.models.gpt_oss.attention` with T = 1 (einsum scores, float32 softmax,
the sink in the denominator).

Split over the cache (flash-decoding): program (row b, KV head, split) scores the G query heads
that share the KV head against its share of the slots, keeping a running max m, sum l and
output acc (base-2 exponentials). The last split of a (row, KV head) to finish (an arrival
counter, as the split-K GEMVs use) merges the splits of its G heads and adds the sink to the
denominator: out = sum_s 2^(m_s - M) acc_s / (sum_s 2^(m_s - M) l_s + 2^(sink - M)). One launch
per layer, not two: at batch 1 a decode step is short kernels back to back, and each launch
costs a few microseconds even inside a CUDA graph. The kernel is launched early (PDL) and lets
the next one (the out projection, which streams its weights early) be placed at once.

Which slots count is read from the device, so that the launch can be captured in a CUDA graph
whose cache grows between replays: a full-attention layer looks at slots [0, column]; a ring
(sliding window) at all its slots. Each slot's stored position masks it (-1: empty or padding;
beyond the query's position or outside its window: unseen).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .linear import arrival_counters
from .pdl import launch_options, release_dependents, wait_for_inputs

LOG2E = 1.4426950408889634
BLOCK_S = 64  # cache slots per tile


@triton.jit
def _attention_kernel(q_ptr, k_ptr, v_ptr, kpos_ptr, qpos_ptr, col_ptr, acc_ptr, ml_ptr,
                      sink_ptr, out_ptr, lock_ptr, S, KV, SPLITS, qk_scale,
                      G: tl.constexpr, BG: tl.constexpr, D: tl.constexpr, BS: tl.constexpr,
                      BSPLIT: tl.constexpr, WINDOW: tl.constexpr, RING: tl.constexpr,
                      PRECISION: tl.constexpr):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    release_dependents()  # the out projection may be placed now and stream its weights
    if RING:
        n = S
    else:
        n = tl.minimum(tl.load(col_ptr) + 1, S)
    chunk = tl.cdiv(tl.cdiv(n, SPLITS), BS) * BS
    start = split * chunk
    stop = tl.minimum(start + chunk, n)

    g = tl.arange(0, BG)
    d = tl.arange(0, D)
    head = kvh * G + g
    q = tl.load(q_ptr + (b * KV * G + head)[:, None] * D + d[None, :], mask=(g < G)[:, None], other=0.0)
    qpos = tl.load(qpos_ptr + b)
    m = tl.full([BG], float("-inf"), tl.float32)
    l = tl.zeros([BG], tl.float32)
    acc = tl.zeros([BG, D], tl.float32)
    base = (b * KV + kvh).to(tl.int64) * S
    for s0 in range(start, stop, BS):
        slots = s0 + tl.arange(0, BS)
        ok = slots < stop
        kpos = tl.load(kpos_ptr + b.to(tl.int64) * S + slots, mask=ok, other=-1)
        seen = (kpos >= 0) & (kpos <= qpos)
        if WINDOW > 0:
            seen &= kpos > qpos - WINDOW
        rows = (base + slots)[:, None] * D + d[None, :]
        k = tl.load(k_ptr + rows, mask=ok[:, None], other=0.0)
        v = tl.load(v_ptr + rows, mask=ok[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # [BG, BS], log2 units
        s = tl.where(seen[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no slot seen yet: keep zeros
        alpha = tl.exp2(m - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m = m_new
    hmask = g < G
    rows = b * KV * G + head  # the query heads' rows of out [B * H, D]
    part = rows * SPLITS + split
    tl.store(acc_ptr + part[:, None] * D + d[None, :], acc, mask=hmask[:, None])
    tl.store(ml_ptr + part * 2, m, mask=hmask)
    tl.store(ml_ptr + part * 2 + 1, l, mask=hmask)
    tl.debug_barrier()
    lock = lock_ptr + b * KV + kvh
    if tl.atomic_add(lock, 1, sem="acq_rel", scope="gpu") == SPLITS - 1:  # the last split merges
        _merge(acc_ptr, ml_ptr, sink_ptr, out_ptr, b * KV * G + kvh * G, kvh * G, SPLITS, G, D,
               BSPLIT)
        tl.atomic_xchg(lock, 0, sem="relaxed", scope="gpu")  # ready for the next layer


@triton.jit
def _merge(acc_ptr, ml_ptr, sink_ptr, out_ptr, row0, head0, SPLITS,
           G: tl.constexpr, D: tl.constexpr, BSPLIT: tl.constexpr):
    """out rows row0 .. row0 + G - 1 (query heads head0 ..) from their splits' (acc, m, l), the
    sink in the denominator. The loop over splits is unrolled with independent loads, so they are in flight together:
    this runs in one program at the end of the kernel, on its critical path."""
    GP: tl.constexpr = triton.next_power_of_2(G)
    g = tl.arange(0, GP)
    d = tl.arange(0, D)
    sp = tl.arange(0, BSPLIT)
    ok = g < G
    rows = row0 + g
    both = ok[:, None] & (sp < SPLITS)[None, :]
    ms = tl.load(ml_ptr + (rows[:, None] * SPLITS + sp[None, :]) * 2, mask=both,
                 other=float("-inf"), cache_modifier=".cg")  # [GP, BSPLIT]
    sink = tl.load(sink_ptr + head0 + g, mask=ok, other=0.0)
    sink = sink.to(tl.float32) * 1.4426950408889634
    top = tl.maximum(tl.max(ms, axis=1), sink)  # finite: the sink always counts
    total = tl.exp2(sink - top)
    merged = tl.zeros([GP, D], tl.float32)
    for i in tl.static_range(BSPLIT):  # in split order: the result does not depend on who arrived last
        here = ok & (g * 0 + i < SPLITS)
        part = rows * SPLITS + i
        m_i = tl.load(ml_ptr + part * 2, mask=here, other=float("-inf"), cache_modifier=".cg")
        l_i = tl.load(ml_ptr + part * 2 + 1, mask=here, other=0.0, cache_modifier=".cg")
        acc_i = tl.load(acc_ptr + part[:, None] * D + d[None, :], mask=here[:, None], other=0.0,
                        cache_modifier=".cg")
        w_i = tl.exp2(m_i - top)
        total += w_i * l_i
        merged += acc_i * w_i[:, None]
    out = merged / total[:, None]
    tl.store(out_ptr + rows[:, None] * D + d[None, :], out.to(out_ptr.dtype.element_ty), mask=ok[:, None])


@functools.lru_cache(maxsize=None)
def _sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132


MAX_SPLITS = 16  # the merge holds one [G, D] tile per split in registers


def _splits(device: torch.device, batch: int, kv_heads: int, slots: int) -> int:
    """About one wave of the SMs, at least a tile of slots each, at most MAX_SPLITS."""
    return max(1, min(triton.cdiv(_sms(device), batch * kv_heads), triton.cdiv(slots, BLOCK_S),
                      MAX_SPLITS))


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kpos: torch.Tensor,
                     qpos: torch.Tensor, column: torch.Tensor, sinks: torch.Tensor, sm_scale: float,
                     window: int, ring: bool) -> torch.Tensor:
    """q [B, H, D] (one new token per row) over the cache k, v [B, KV, S, D] with slot positions
    kpos [B, S]; qpos [B] the new tokens' positions; column: a 1-element long tensor on the
    device, the cache column just written (a full layer reads slots [0, column]); sinks [H].
    Returns [B, H * D] in q's dtype."""
    B, H, D = q.shape
    _, KV, S, _ = k.shape
    if H % KV or k.shape != (B, KV, S, D) or v.shape != k.shape or kpos.shape != (B, S):
        raise ValueError(f"decode_attention: inconsistent shapes q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}, kpos {tuple(kpos.shape)}")
    if D & (D - 1) or D < 16:
        raise ValueError(f"decode_attention needs a power-of-two head_dim >= 16, got {D}")
    G = H // KV
    splits = _splits(q.device, B, KV, S)
    acc = torch.empty(B, H, splits, D, device=q.device, dtype=torch.float32)
    ml = torch.empty(B, H, splits, 2, device=q.device, dtype=torch.float32)
    out = torch.empty(B, H * D, device=q.device, dtype=q.dtype)
    locks = arrival_counters(q.device)
    if B * KV > locks.numel():
        raise ValueError(f"decode_attention: at most {locks.numel()} (row, KV head) pairs, got {B * KV}")
    _attention_kernel[(B, KV, splits)](
        q.contiguous(), k, v, kpos, qpos, column, acc, ml, sinks, out, locks, S, KV, splits,
        sm_scale * LOG2E, G=G, BG=max(16, triton.next_power_of_2(G)), D=D, BS=BLOCK_S,
        BSPLIT=triton.next_power_of_2(splits), WINDOW=int(window), RING=bool(ring), num_warps=4,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",  # fp32 models: no TF32 rounding
        **launch_options(q.device))
    return out

