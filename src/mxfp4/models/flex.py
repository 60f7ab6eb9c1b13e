"""Prefill attention with sinks on torch's FlexAttention: no T x T score matrix in memory.

FlexAttention returns the log-sum-exp of each query's scores, and a sink logit s joins the
softmax denominator only, so attention with a sink is FlexAttention's output scaled by
e^lse / (e^lse + e^s) = sigmoid(lse - s). The mask (padding, causality, sliding window) comes
from token positions, as in models/gpt_oss.attention, the reference twin.

On CUDA the call goes through torch.compile (one fused Triton kernel, compiled per shape); on
other devices FlexAttention runs eagerly (the same math, materialised; tests use it).
"""

from __future__ import annotations

import functools

import torch
from torch.nn.attention.flex_attention import AuxRequest, create_block_mask, flex_attention


@functools.lru_cache(maxsize=None)
def _compiled():
    # dynamic: one compile serves every prompt length (static shapes would recompile per
    # length, and past dynamo's recompile limit fall back to the unfused math)
    return torch.compile(flex_attention, dynamic=True)


def _block_mask(pos: torch.Tensor, window: int):
    """Who sees whom among the tokens of one call: q_pos, k_pos from `pos` [B, T]."""
    B, T = pos.shape

    def seen(b, h, q, k):
        qp, kp = pos[b, q], pos[b, k]
        ok = (kp >= 0) & (kp <= qp)
        return ok & (kp > qp - window) if window else ok

    # on CUDA the mask is built by a compiled kernel, block by block (no B x T x T tensor)
    return create_block_mask(seen, B, None, T, T, device=pos.device, _compile=pos.is_cuda)


def flex_attention_with_sinks(q, k, v, step, sinks, sm_scale: float, window: int) -> torch.Tensor:
    """q [B, T, KV, G, D] over k, v [B, KV, T, D] (the same T tokens), positions step.pos [B, T];
    returns [B, T, KV * G * D] in v's dtype. Block masks are kept in step.masks by window."""
    B, T, KV, G, D = q.shape
    if step.masks is None:
        step.masks = {}
    if window not in step.masks:
        step.masks[window] = _block_mask(step.pos, window)
    run = _compiled() if q.is_cuda else flex_attention
    # FORCE_USE_FLEX_ATTENTION: short prompts (< 128 tokens) would otherwise get torch's
    # flex-decoding kernel, which finds no valid config for grouped heads on torch 2.11
    out, aux = run(q.reshape(B, T, KV * G, D).transpose(1, 2), k, v, block_mask=step.masks[window],
                   scale=sm_scale, enable_gqa=True, return_aux=AuxRequest(lse=True),
                   kernel_options={"FORCE_USE_FLEX_ATTENTION": True} if q.is_cuda else None)
    keep = torch.sigmoid(aux.lse - sinks.float()[None, :, None])  # [B, H, T]
    out = out.float() * keep[..., None]
    return out.transpose(1, 2).reshape(B, T, KV * G * D).to(v.dtype)
