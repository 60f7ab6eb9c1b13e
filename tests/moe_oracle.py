"""Float64 GPT-OSS MoE on dequantized weights, and small random MoE layers for the tests."""

from __future__ import annotations

import torch

from mxfp4.nn.moe import MoE


def moe_float64(m: MoE, x: torch.Tensor) -> torch.Tensor:
    """The layer in float64 from m's dequantized weights; ties go to the lower expert index."""
    x = x.reshape(-1, m.hidden_size).double()
    logits = x @ m.router_weight.double().T + m.router_bias.double()
    vals, ids = torch.sort(logits, dim=-1, descending=True, stable=True)
    k = m.experts_per_token
    ids, weights = ids[:, :k], torch.softmax(vals[:, :k], dim=-1)
    w1, w2 = m.w1.dequantize().double(), m.w2.dequantize().double()
    h = torch.einsum("tkoh,th->tko", w1[ids], x) + m.b1.double()[ids]
    gate, lin = h[..., 0::2].clamp(max=m.swiglu_limit), h[..., 1::2].clamp(-m.swiglu_limit, m.swiglu_limit)
    a = gate * torch.sigmoid(m.swiglu_alpha * gate) * (lin + 1)
    y = torch.einsum("tkoi,tki->tko", w2[ids], a) + m.b2.double()[ids]
    return (y * weights[..., None]).sum(dim=1)


def random_moe(E=8, H=64, I=32, k=4, seed=0, scale_rule="ceil", weight_std=0.2) -> MoE:
    """Random bf16 router and biases, MXFP4 experts quantized from normal weights."""
    g = torch.Generator().manual_seed(seed)
    rw = (torch.randn(E, H, generator=g) / H ** 0.5).bfloat16()
    rb = (torch.randn(E, generator=g) * 0.1).bfloat16()
    w1 = torch.randn(E, 2 * I, H, generator=g) * weight_std
    w2 = torch.randn(E, H, I, generator=g) * weight_std
    b1 = (torch.randn(E, 2 * I, generator=g) * 0.1).bfloat16()
    b2 = (torch.randn(E, H, generator=g) * 0.1).bfloat16()
    return MoE.from_float(rw, rb, w1, b1, w2, b2, scale_rule=scale_rule, experts_per_token=k)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out = out.reshape(ref.shape).double()
    assert torch.isfinite(out).all(), "output has NaN or Inf"
    return ((out - ref).norm() / ref.norm()).item()
