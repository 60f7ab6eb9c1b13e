"""Triton routing kernels for the MoE layer: router logits, top-k + softmax, grouping by expert.

Reference twin: `mxfp4.nn.moe.route_reference` (fp32 logits, stable descending sort, so that
of two equal logits the lower expert index is chosen first; softmax over the k selected).

Two routes through these kernels, neither with a host synchronisation:
- decode (few tokens): `_logits_kernel` spreads the router GEMV over many programs, and the
  last of a token's programs to finish does its top-k + softmax.
- batch: `_logits_part_kernel` computes the router GEMM in tiles and K splits, `_route_kernel`
  sums them and does top-k, softmax and, with one atomic per pair, the pair's rank inside its
  expert; `_align_kernel` turns the per-expert counts into the tables
  the grouped GEMMs read: pairs sorted by expert and one row block per (expert, BM rows).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .pdl import release_dependents, wait_for_inputs


@triton.jit
def bf16_dot(a, b, acc, INTERPRET: tl.constexpr):
    """acc + a @ b for bf16 a, b. The Triton interpreter multiplies bf16 as raw uint16 (wrong),
    so under TRITON_INTERPRET=1 the same products are taken in fp32, which is exact for them."""
    if INTERPRET:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc)


@triton.jit
def round_to(x, dtype: tl.constexpr, INTERPRET: tl.constexpr):
    """fp32 x in dtype, rounded to nearest even. The interpreter truncates fp32 -> bf16, so
    there the rounding is done on the bits first (finite values; the GPU's cvt does it all)."""
    if dtype == tl.float32:
        return x
    if INTERPRET and dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)


@triton.jit
def as_bf16(x, INTERPRET: tl.constexpr):
    if x.dtype == tl.bfloat16:
        return x
    return round_to(x.to(tl.float32), tl.bfloat16, INTERPRET)


@triton.jit
def select_topk(logits, col, K: tl.constexpr, K_PAD: tl.constexpr):
    """Top-K of each row of `logits` [R, E_PAD] (padding columns hold -inf) and softmax.

    Returns (ids [R, K_PAD] int32, weights [R, K_PAD] fp32) sorted by descending logit;
    argmax breaks ties towards the lower column, so equal logits pick the lower expert first.
    Columns >= K of the results are 0.
    """
    kcol = tl.arange(0, K_PAD)[None, :]
    ids = tl.zeros((logits.shape[0], K_PAD), dtype=tl.int32)
    vals = tl.full((logits.shape[0], K_PAD), float("-inf"), dtype=tl.float32)
    work = logits
    for j in tl.static_range(K):
        best = tl.argmax(work, axis=1, tie_break_left=True).to(tl.int32)
        v = tl.max(work, axis=1)
        ids = tl.where(kcol == j, best[:, None], ids)
        vals = tl.where(kcol == j, v[:, None], vals)
        work = tl.where(col[None, :] == best[:, None], float("-inf"), work)
    top = tl.max(vals, axis=1)
    p = tl.where(kcol < K, tl.exp(vals - top[:, None]), 0.0)
    weights = p / tl.sum(p, axis=1)[:, None]
    return ids, weights


@triton.jit
def _logits_kernel(x_ptr, wr_ptr, br_ptr, logits_ptr, ids_ptr, wts_ptr, count_ptr, H, E,
                   stride_x, stride_w, K: tl.constexpr, K_PAD: tl.constexpr,
                   E_PAD: tl.constexpr, BE: tl.constexpr, BK: tl.constexpr,
                   INTERPRET: tl.constexpr):
    """logits[t, e-block] = x[t] . Wr[e-block] + br (fp32), one token and BE experts per
    program; the token's last program to finish routes it (top-k + softmax into ids / wts).

    count_ptr: zeroed per-token counters (kernels.linear.arrival_counters); the router resets
    its token's."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    release_dependents()  # a short kernel: let the next one be placed at once
    t = tl.program_id(0)
    offs_e = tl.program_id(1) * BE + tl.arange(0, BE)
    offs_k = tl.arange(0, BK)
    acc = tl.zeros((BE, BK), dtype=tl.float32)
    for k0 in range(0, H, BK):
        kk = k0 + offs_k
        xv = as_bf16(tl.load(x_ptr + t * stride_x + kk, mask=kk < H, other=0.0), INTERPRET)
        w = as_bf16(tl.load(wr_ptr + offs_e[:, None] * stride_w + kk[None, :],
                            mask=(offs_e[:, None] < E) & (kk[None, :] < H), other=0.0), INTERPRET)
        acc += w.to(tl.float32) * xv.to(tl.float32)[None, :]
    out = tl.sum(acc, axis=1) + tl.load(br_ptr + offs_e, mask=offs_e < E, other=0.0).to(tl.float32)
    tl.store(logits_ptr + t * E_PAD + offs_e, out, mask=offs_e < E)
    tl.debug_barrier()  # every thread's logits are written before the program arrives
    arrived = tl.atomic_add(count_ptr + t, 1, sem="acq_rel", scope="gpu")
    if arrived == tl.num_programs(1) - 1:  # the others' logits are visible (acquire)
        col = tl.arange(0, E_PAD)
        lg = tl.load(logits_ptr + t * E_PAD + col, mask=col < E, other=float("-inf"),
                     cache_modifier=".cg")
        ids, wts = select_topk(lg[None, :], col, K, K_PAD)
        kcol = tl.arange(0, K_PAD)[None, :]
        tl.store(ids_ptr + t * K + kcol, tl.minimum(ids, E - 1), mask=kcol < K)
        tl.store(wts_ptr + t * K + kcol, wts, mask=kcol < K)
        tl.atomic_xchg(count_ptr + t, 0, sem="relaxed", scope="gpu")  # ready for the next call


@triton.jit
def _logits_part_kernel(x_ptr, wr_ptr, part_ptr, T, H, E, stride_x, stride_w, k_chunk,
                        E_PAD: tl.constexpr, BT: tl.constexpr, BE: tl.constexpr,
                        BK: tl.constexpr, INTERPRET: tl.constexpr):
    """part[s, t, e] = x[t, chunk s] . Wr[e, chunk s] in fp32, for BT tokens x BE experts.

    The router is a small GEMM ([T, H] x [E, H]); splitting it over tokens, experts and K
    lets every SM read a slice of Wr instead of one program per token tile reading all of it.
    """
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    release_dependents()  # a short kernel: let the next one be placed at once
    offs_t = tl.program_id(0) * BT + tl.arange(0, BT)
    offs_e = tl.program_id(1) * BE + tl.arange(0, BE)
    split = tl.program_id(2)
    offs_k = tl.arange(0, BK)
    k_stop = tl.minimum(split * k_chunk + k_chunk, H)
    acc = tl.zeros((BT, BE), dtype=tl.float32)
    for k0 in range(split * k_chunk, k_stop, BK):
        kk = k0 + offs_k
        xt = tl.load(x_ptr + offs_t[:, None] * stride_x + kk[None, :],
                     mask=(offs_t[:, None] < T) & (kk[None, :] < k_stop), other=0.0)
        w = tl.load(wr_ptr + offs_e[:, None] * stride_w + kk[None, :],
                    mask=(offs_e[:, None] < E) & (kk[None, :] < k_stop), other=0.0)
        acc = bf16_dot(as_bf16(xt, INTERPRET), tl.trans(as_bf16(w, INTERPRET)), acc, INTERPRET)
    tl.store(part_ptr + (split * T + offs_t)[:, None] * E_PAD + offs_e[None, :], acc,
             mask=(offs_t[:, None] < T) & (offs_e[None, :] < E_PAD))


@triton.jit
def _route_kernel(part_ptr, br_ptr, ids_ptr, wts_ptr, rank_ptr, counts_ptr, T, E,
                  K: tl.constexpr, K_PAD: tl.constexpr, E_PAD: tl.constexpr,
                  SPLIT: tl.constexpr, BT: tl.constexpr):
    """Router logits (the K splits of _logits_part_kernel summed in order, plus the bias),
    top-k + softmax for BT tokens, and the rank of each pair inside its expert."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    release_dependents()  # a short kernel: let the next one be placed at once
    offs_t = tl.program_id(0) * BT + tl.arange(0, BT)
    col = tl.arange(0, E_PAD)
    acc = tl.zeros((BT, E_PAD), dtype=tl.float32)
    for s in tl.static_range(SPLIT):
        acc += tl.load(part_ptr + (s * T + offs_t)[:, None] * E_PAD + col[None, :],
                       mask=offs_t[:, None] < T, other=0.0)
    bias = tl.load(br_ptr + col, mask=col < E, other=0.0).to(tl.float32)
    logits = tl.where(col[None, :] < E, acc + bias[None, :], float("-inf"))
    ids, weights = select_topk(logits, col, K, K_PAD)
    ids = tl.minimum(ids, E - 1)  # only NaN logits could point past the last expert
    kcol = tl.arange(0, K_PAD)[None, :]
    valid = (offs_t[:, None] < T) & (kcol < K)
    pair = offs_t[:, None] * K + kcol
    tl.store(ids_ptr + pair, ids, mask=valid)
    tl.store(wts_ptr + pair, weights, mask=valid)
    # The rank's order inside an expert depends on timing; every consumer computes each row
    # on its own and writes it back by pair index, so the layer's output does not.
    rank = tl.atomic_add(counts_ptr + ids, 1, mask=valid)
    tl.store(rank_ptr + pair, rank, mask=valid)


@triton.jit
def _align_kernel(ids_ptr, rank_ptr, counts_ptr, sorted_pair_ptr,
                  block_expert_ptr, block_start_ptr, block_rows_ptr,
                  tail_expert_ptr, tail_start_ptr, tail_rows_ptr,
                  P, NB_MAX, E,
                  E_PAD: tl.constexpr, BM: tl.constexpr, CHUNK: tl.constexpr,
                  TAIL: tl.constexpr):
    """Sorted pair list and block table from the per-expert counts.

    Every program recomputes the (tiny) per-expert prefix sums, so programs need no
    communication: program i places pairs [i*CHUNK, (i+1)*CHUNK) and block-table
    entries [i*CHUNK, (i+1)*CHUNK). TAIL > 0: an expert's last 1..TAIL rows past a multiple
    of BM go to a second table (one entry per expert, for a GEMM with TAIL-row blocks)
    instead of a BM-row block of their own; program 0 writes it.
    """
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    release_dependents()  # a short kernel: let the next one be placed at once
    col = tl.arange(0, E_PAD)
    counts = tl.load(counts_ptr + col, mask=col < E, other=0)
    offsets = tl.cumsum(counts, axis=0) - counts          # first sorted row of each expert
    tail = counts % BM
    tail = tl.where(tail <= TAIL, tail, 0)  # TAIL = 0: none
    big = counts - tail  # rows in BM-row blocks
    nblk = (big + BM - 1) // BM
    blk_end = tl.cumsum(nblk, axis=0)
    blk_start = blk_end - nblk
    total = tl.sum(nblk, axis=0)

    offs = tl.program_id(0) * CHUNK + tl.arange(0, CHUNK)
    # pairs: sorted position = offset of the pair's expert + its rank inside the expert
    pm = offs < P
    e = tl.load(ids_ptr + offs, mask=pm, other=0)
    r = tl.load(rank_ptr + offs, mask=pm, other=0)
    base = tl.sum(tl.where(col[None, :] == e[:, None], offsets[None, :], 0), axis=1)
    tl.store(sorted_pair_ptr + base + r, offs, mask=pm)

    # blocks: expert b belongs to = number of experts whose blocks end at or before b
    bm = offs < NB_MAX
    eb = tl.sum((blk_end[None, :] <= offs[:, None]).to(tl.int32), axis=1)
    sel = col[None, :] == eb[:, None]
    first_blk = tl.sum(tl.where(sel, blk_start[None, :], 0), axis=1)
    first_row = tl.sum(tl.where(sel, offsets[None, :], 0), axis=1)
    cnt = tl.sum(tl.where(sel, big[None, :], 0), axis=1)
    done = (offs - first_blk) * BM
    used = offs < total
    tl.store(block_expert_ptr + offs, tl.where(used, eb, -1), mask=bm)
    tl.store(block_start_ptr + offs, first_row + done, mask=bm)
    tl.store(block_rows_ptr + offs, tl.minimum(cnt - done, BM), mask=bm)
    if TAIL > 0:
        if tl.program_id(0) == 0:  # all E_PAD entries: experts past E have no tail
            tl.store(tail_expert_ptr + col, tl.where(tail > 0, col, -1))
            tl.store(tail_start_ptr + col, offsets + big)
            tl.store(tail_rows_ptr + col, tail)


def pad_pow2(n: int, lo: int = 1) -> int:
    return max(lo, triton.next_power_of_2(n))


def num_blocks_max(pairs: int, experts: int, bm: int) -> int:
    """Upper bound on row blocks: each non-empty expert wastes at most one partial block
    (with a tail table too: the tails only take rows out of the BM-row blocks)."""
    return -(-pairs // bm) + min(experts, pairs)


@triton.jit
def swiglu(gate, lin, alpha, limit):
    """GPT-OSS SwiGLU: gate clamped above at `limit`, lin to ±limit, gate·σ(α·gate)·(lin + 1)."""
    gate = tl.minimum(gate, limit, propagate_nan=tl.PropagateNan.ALL)
    lin = tl.minimum(tl.maximum(lin, -limit, propagate_nan=tl.PropagateNan.ALL), limit,
                     propagate_nan=tl.PropagateNan.ALL)
    return gate * tl.sigmoid(alpha * gate) * (lin + 1.0)
