"""Fused small ops of one decode step, so that a CUDA-graph step launches one kernel where eager
PyTorch launches many.

- `add_rmsnorm(x, delta, weight, eps) -> (h, y)`: the residual add and the RMSNorm after it.
  Reference twin: `add_rmsnorm_reference` (the math of models.gpt_oss.RMSNorm.forward).
- `rope_kv_write(qkv, pos, slot, ...) -> q`: RoPE on the new token's queries and keys, and the
  key, value and position written into cache column `slot % S`, where `slot` is read on the
  device (it advances between graph replays). Reference twin: `rope_kv_write_reference`
  (models.rope.apply_rope and index_copy_).

Both compute in float32 in the twins' order, with fp contraction off (no fused multiply-adds the
twins do not have) and, on the GPU, the libdevice cos / sin / rsqrt that torch's CUDA kernels
also call. Only the RMSNorm's sum of squares is added in another order than torch's.
Wrappers check shapes, dtypes and devices on the host only (no device synchronisation) and
launch one kernel each, with programmatic dependent launch where the GPU has it (kernels.pdl).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .moe_routing import round_to
from .pdl import launch_options, release_dependents, wait_for_inputs
from .unpack import INTERPRET

FLOATS = (torch.bfloat16, torch.float16, torch.float32)
MAX_HIDDEN = 8192  # a whole row sits in one program's registers
ROPE_HEADS = 16  # heads per rope_kv_write program


@triton.jit
def _rsqrt(x):
    if INTERPRET:  # the interpreter has no libdevice
        return tl.math.rsqrt(x)
    return libdevice.rsqrt(x)


@triton.jit
def _cos_sin(x):
    if INTERPRET:
        return tl.cos(x), tl.sin(x)
    return libdevice.cos(x), libdevice.sin(x)


@triton.jit
def _add_rmsnorm_kernel(x_ptr, d_ptr, w_ptr, h_ptr, y_ptr, H, stride_x, stride_d, eps,
                        HAS_DELTA: tl.constexpr, BLOCK: tl.constexpr):
    """One row: h = x + delta (float32 add, one rounding); y = RMSNorm(h) * weight."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    release_dependents()  # a short kernel: let the next one be placed at once
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    m = cols < H
    x = tl.load(x_ptr + row * stride_x + cols, mask=m, other=0.0)
    if HAS_DELTA:
        d = tl.load(d_ptr + row * stride_d + cols, mask=m, other=0.0)
        h = round_to(x.to(tl.float32) + d.to(tl.float32), h_ptr.dtype.element_ty, INTERPRET)
        tl.store(h_ptr + row * H + cols, h, mask=m)
    else:
        h = x
    t = h.to(tl.float32)
    r = _rsqrt(tl.sum(t * t, axis=0) / H + eps)
    w = tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
    y = (t * r) * w
    tl.store(y_ptr + row * H + cols, round_to(y, y_ptr.dtype.element_ty, INTERPRET), mask=m)


@triton.jit
def _rope_kv_kernel(qkv_ptr, pos_ptr, slot_ptr, freq_ptr, q_ptr, k_ptr, v_ptr, pc_ptr,
                    stride_qkv, S, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh,
                    stride_vs, stride_pb, stride_ps, concentration,
                    HEADS: tl.constexpr, KV: tl.constexpr, HALF: tl.constexpr,
                    HALF_PAD: tl.constexpr, BH: tl.constexpr):
    """Row b, heads [BH * pid1, BH * (pid1 + 1)) of q | k | v: rotate q and k (dim j with
    j + HALF), store q, and k and v in cache column slot % S; the first program of a row
    also stores pos[b] there."""
    wait_for_inputs()  # launched early (PDL): nothing is read or written before this
    release_dependents()  # a short kernel: let the next one be placed at once
    b = tl.program_id(0).to(tl.int64)
    hh = tl.program_id(1) * BH + tl.arange(0, BH)  # head index along q | k | v
    j = tl.arange(0, HALF_PAD)
    slot = tl.load(slot_ptr)
    col = ((slot % S) + S) % S  # the twin's Python-style remainder, for any sign of slot
    p = tl.load(pos_ptr + b)
    angle = tl.maximum(p, 0).to(tl.float32) * tl.load(freq_ptr + j, mask=j < HALF, other=0.0)
    c, s = _cos_sin(angle)
    c, s = (c * concentration)[None, :], (s * concentration)[None, :]

    m = (hh[:, None] < HEADS + 2 * KV) & (j[None, :] < HALF)
    src = qkv_ptr + b * stride_qkv + hh[:, None] * (2 * HALF) + j[None, :]
    x1 = tl.load(src, mask=m, other=0.0)
    x2 = tl.load(src + HALF, mask=m, other=0.0)
    f1, f2 = x1.to(tl.float32), x2.to(tl.float32)
    r1 = round_to(f1 * c - f2 * s, q_ptr.dtype.element_ty, INTERPRET)
    r2 = round_to(f2 * c + f1 * s, q_ptr.dtype.element_ty, INTERPRET)

    is_q = hh[:, None] < HEADS
    dst = q_ptr + (b * HEADS + hh[:, None]) * (2 * HALF) + j[None, :]
    tl.store(dst, r1, mask=m & is_q)
    tl.store(dst + HALF, r2, mask=m & is_q)
    is_v = hh[:, None] >= HEADS + KV
    kv = tl.maximum(tl.where(is_v, hh[:, None] - HEADS - KV, hh[:, None] - HEADS), 0)
    dst = k_ptr + b * stride_kb + kv * stride_kh + col * stride_ks + j[None, :]
    is_k = (hh[:, None] >= HEADS) & (hh[:, None] < HEADS + KV)
    tl.store(dst, r1, mask=m & is_k)
    tl.store(dst + HALF, r2, mask=m & is_k)
    dst = v_ptr + b * stride_vb + kv * stride_vh + col * stride_vs + j[None, :]
    tl.store(dst, x1, mask=m & is_v)
    tl.store(dst + HALF, x2, mask=m & is_v)
    if tl.program_id(1) == 0:
        tl.store(pc_ptr + b * stride_pb + col * stride_ps, p)


# -- wrappers ----------------------------------------------------------------------------------
def _need(ok: bool, message: str, error=ValueError) -> None:
    if not ok:
        raise error(message)


def _check_tensor(name: str, t, dtypes, dim: int, device=None) -> None:
    _need(isinstance(t, torch.Tensor), f"{name} must be a torch.Tensor, got {type(t).__name__}",
          TypeError)
    _need(t.dtype in dtypes, f"{name} must have dtype in {[str(d) for d in dtypes]}, "
          f"got {t.dtype}", TypeError)
    _need(t.dim() == dim, f"{name} must have {dim} dimensions, got shape {tuple(t.shape)}")
    _need(device is None or t.device == device,
          f"{name} is on {t.device}, expected {device} (where the other inputs are)")


def _check_runnable(name: str, device: torch.device) -> None:
    _need(device.type == "cuda" or INTERPRET.value,
          f"{name} runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1), got {device}")


def add_rmsnorm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, y): h = x + delta in x's dtype (x itself when delta is None), y = RMSNorm(h) with
    `weight` and `eps`, in x's dtype. x [M, H] (rows may be strided, elements contiguous),
    delta of x's shape and dtype or None, weight [H]. Twin: add_rmsnorm_reference."""
    _check_tensor("x", x, FLOATS, 2)
    M, H = x.shape
    _check_runnable("add_rmsnorm", x.device)
    _check_tensor("weight", weight, FLOATS, 1, x.device)
    _need(weight.shape[0] == H, f"weight must be [{H}] (x's last dimension), "
          f"got {tuple(weight.shape)}")
    _need(1 <= H <= MAX_HIDDEN, f"add_rmsnorm handles rows of 1 to {MAX_HIDDEN} elements, got {H}")
    _need(x.stride(1) == 1 and weight.stride(0) == 1, "x's rows and weight must be contiguous")
    _need(isinstance(eps, (int, float)), f"eps must be a float, got {type(eps).__name__}",
          TypeError)
    if delta is not None:
        _check_tensor("delta", delta, (x.dtype,), 2, x.device)
        _need(delta.shape == x.shape, f"delta must have x's shape {tuple(x.shape)}, "
              f"got {tuple(delta.shape)}")
        _need(delta.stride(1) == 1, "delta's rows must be contiguous")
        h = torch.empty(M, H, dtype=x.dtype, device=x.device)
    else:
        h = x
    y = torch.empty(M, H, dtype=x.dtype, device=x.device)
    if M == 0:
        return h, y
    block = triton.next_power_of_2(H)
    _add_rmsnorm_kernel[(M,)](x, x if delta is None else delta, weight, h, y, H, x.stride(0),
                              0 if delta is None else delta.stride(0), float(eps),
                              HAS_DELTA=delta is not None, BLOCK=block,
                              num_warps=max(1, min(16, block // 512)), enable_fp_fusion=False,
                              **launch_options(x.device))
    return h, y


def add_rmsnorm_reference(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor,
                          eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """add_rmsnorm in torch: the residual add, then RMSNorm.forward of models/gpt_oss.py."""
    h = x if delta is None else x + delta
    t = h.float()
    t = t * torch.rsqrt(t.pow(2).mean(dim=-1, keepdim=True) + eps)
    return h, (t * weight.float()).to(x.dtype)


def _check_rope(qkv, pos, slot, inv_freq, concentration, k_cache, v_cache, pos_cache, heads,
                kv_heads, head_dim) -> None:
    for name, n in (("heads", heads), ("kv_heads", kv_heads), ("head_dim", head_dim)):
        _need(isinstance(n, int) and n >= 1, f"{name} must be a positive int, got {n!r}")
    _need(head_dim % 2 == 0, f"head_dim must be even (RoPE rotates pairs), got {head_dim}")
    _need(heads % kv_heads == 0, f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    _check_tensor("qkv", qkv, FLOATS, 2)
    B, width = qkv.shape
    dev = qkv.device
    _check_runnable("rope_kv_write", dev)
    _need(width == (heads + 2 * kv_heads) * head_dim,
          f"qkv must be [B, (heads + 2 * kv_heads) * head_dim] = [B, "
          f"{(heads + 2 * kv_heads) * head_dim}], got {tuple(qkv.shape)}")
    _check_tensor("pos", pos, (torch.long,), 1, dev)
    _need(pos.shape[0] == B,
          f"pos must be [{B}] (one position per qkv row), got {tuple(pos.shape)}")
    _need(isinstance(slot, torch.Tensor) and slot.dtype == torch.long and slot.numel() == 1,
          "slot must be a 1-element torch.long tensor holding the cache column (on the device)",
          TypeError)
    _need(slot.device == dev, f"slot is on {slot.device}, expected {dev}: it is read on the device")
    _check_tensor("inv_freq", inv_freq, (torch.float32,), 1, dev)
    _need(inv_freq.shape[0] == head_dim // 2,
          f"inv_freq must be [{head_dim // 2}] (head_dim / 2), got {tuple(inv_freq.shape)}")
    _need(isinstance(concentration, (int, float)),
          f"concentration must be a float, got {type(concentration).__name__}", TypeError)
    for name, cache in (("k_cache", k_cache), ("v_cache", v_cache)):
        _check_tensor(name, cache, (qkv.dtype,), 4, dev)
        _need(cache.shape[:2] == (B, kv_heads) and cache.shape[3] == head_dim
              and cache.shape[2] >= 1,
              f"{name} must be [{B}, {kv_heads}, S, {head_dim}], got {tuple(cache.shape)}")
        _need(cache.stride(3) == 1, f"{name}'s last dimension must be contiguous")
    _need(v_cache.shape == k_cache.shape, f"v_cache must have k_cache's shape "
          f"{tuple(k_cache.shape)}, got {tuple(v_cache.shape)}")
    _check_tensor("pos_cache", pos_cache, (torch.long,), 2, dev)
    _need(pos_cache.shape == (B, k_cache.shape[2]),
          f"pos_cache must be [{B}, {k_cache.shape[2]}], got {tuple(pos_cache.shape)}")
    _need(qkv.stride(1) == 1 and inv_freq.stride(0) == 1,
          "qkv's rows and inv_freq must be contiguous")


def rope_kv_write(qkv: torch.Tensor, pos: torch.Tensor, slot: torch.Tensor,
                  inv_freq: torch.Tensor, concentration: float, k_cache: torch.Tensor,
                  v_cache: torch.Tensor, pos_cache: torch.Tensor, heads: int, kv_heads: int,
                  head_dim: int) -> torch.Tensor:
    """The decode step's RoPE and cache write: returns q [B, heads, head_dim] in qkv's dtype.

    qkv [B, (heads + 2 * kv_heads) * head_dim] (q | k | v of one new token per row), pos [B]
    long, slot a 1-element long tensor on the device (column slot % S is written, S =
    k_cache.shape[2]), inv_freq [head_dim / 2] float32 and concentration from
    models.rope.yarn_inv_freq, k_cache / v_cache [B, kv_heads, S, head_dim] in qkv's dtype,
    pos_cache [B, S] long. Twin: rope_kv_write_reference."""
    _check_rope(qkv, pos, slot, inv_freq, concentration, k_cache, v_cache, pos_cache, heads,
                kv_heads, head_dim)
    B = qkv.shape[0]
    q = torch.empty(B, heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    if B == 0:
        return q
    half = head_dim // 2
    grid = (B, triton.cdiv(heads + 2 * kv_heads, ROPE_HEADS))
    _rope_kv_kernel[grid](qkv, pos, slot, inv_freq, q, k_cache, v_cache, pos_cache,
                          qkv.stride(0), k_cache.shape[2], *k_cache.stride()[:3],
                          *v_cache.stride()[:3], *pos_cache.stride(), float(concentration),
                          HEADS=heads, KV=kv_heads, HALF=half,
                          HALF_PAD=triton.next_power_of_2(half), BH=ROPE_HEADS,
                          num_warps=2, enable_fp_fusion=False, **launch_options(qkv.device))
    return q


def rope_kv_write_reference(qkv, pos, slot, inv_freq, concentration, k_cache, v_cache, pos_cache,
                            heads: int, kv_heads: int, head_dim: int) -> torch.Tensor:
    """rope_kv_write in torch: Rope.cos_sin's angles, apply_rope, index_copy_ at slot % S."""
    from ..models.rope import apply_rope  # pure torch; imported here to keep kernels below models

    B, D, KV = qkv.shape[0], head_dim, kv_heads
    q, k, v = qkv.view(B, 1, -1).split([heads * D, KV * D, KV * D], dim=-1)
    angles = pos.clamp(min=0).float()[:, None, None] * inv_freq  # [B, 1, D / 2]
    cos, sin = angles.cos() * concentration, angles.sin() * concentration
    q = apply_rope(q.reshape(B, 1, heads, D), cos, sin)[:, 0]
    k = apply_rope(k.reshape(B, 1, KV, D), cos, sin).transpose(1, 2)  # [B, KV, 1, D]
    col = slot.reshape(1) % k_cache.shape[2]
    k_cache.index_copy_(2, col, k)
    v_cache.index_copy_(2, col, v.reshape(B, 1, KV, D).transpose(1, 2))
    pos_cache.index_copy_(1, col, pos[:, None])
    return q
