"""QATMoE: the trainable twin of mxfp4.nn.MoE (GPT-OSS experts), for quantization-aware training.

It holds float expert weights w1 [E, 2I, H] and w2 [E, H, I], biases b1 [E, 2I], b2 [E, H] and
the router (weight [E, H], bias [E]) as Parameters. Its forward rounds w1 and w2 to MXFP4
(blocks of 32 along the last axis, round to nearest, straight-through gradient; see qat.py) and
runs `moe_float`, the float-weight twin of mxfp4.nn.moe.moe_reference: the same routing, SwiGLU
and per-expert float32 products in the same order, so that `to_mx` (an mxfp4.nn.MoE on the
same codes) gives a bit-identical forward on the reference path.
"""

from __future__ import annotations

import torch
from torch import nn

from ..codec import FLOAT_DTYPES
from ..format import BLOCK_SIZE
from ..nn.moe import ALPHA, BACKENDS, LIMIT, MoE, route_reference, swiglu
from ..ops import quantize
from .qat import check_options, fake_quantize, master_param


def moe_float(x, router_w, router_b, w1, b1, w2, b2, k: int, alpha: float = ALPHA,
              limit: float = LIMIT) -> torch.Tensor:
    """moe_reference with float expert weights w1 [E, 2I, H], w2 [E, H, I]; differentiable
    (the router's softmax weights, the experts and their biases all get gradients)."""
    ids, weights = route_reference(x, router_w, router_b, k)
    xf = x.float()
    out = torch.zeros(x.shape[0], router_w.shape[1], dtype=torch.float32, device=x.device)
    for e in torch.unique(ids).tolist():
        tok, slot = (ids == e).nonzero(as_tuple=True)
        h = xf[tok] @ w1[e].T + b1[e].float()
        y = swiglu(h, alpha, limit) @ w2[e].T + b2[e].float()
        out.index_add_(0, tok, y * weights[tok, slot, None])
    return out.to(x.dtype)


class QATMoE(nn.Module):
    """GPT-OSS MoE with trainable float experts whose forward uses their MXFP4 rounding.

    `enabled = False` runs the float experts unrounded. Reference twin of the converted layer:
    mxfp4.nn.MoE (see `to_mx`).
    """

    def __init__(self, router_weight, router_bias, w1, b1, w2, b2, *, experts_per_token: int = 4,
                 swiglu_alpha: float = ALPHA, swiglu_limit: float = LIMIT,
                 scale_rule: str = "floor", master_dtype=None):
        super().__init__()
        check_options(scale_rule, BLOCK_SIZE, master_dtype)
        tensors = dict(router_weight=router_weight, router_bias=router_bias, w1=w1, b1=b1, w2=w2, b2=b2)
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor) or t.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{name} must be a float tensor, got "
                                f"{getattr(t, 'dtype', type(t).__name__)}")
        if w1.dim() != 3 or w1.shape[1] % 2:
            raise ValueError(f"w1 must be [E, 2I, H], got {tuple(w1.shape)}")
        E, n2, H = w1.shape
        I = n2 // 2
        shapes = dict(router_weight=(E, H), router_bias=(E,), b1=(E, 2 * I), w2=(E, H, I), b2=(E, H))
        for name, shape in shapes.items():
            if tuple(tensors[name].shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(tensors[name].shape)}")
        if H % BLOCK_SIZE or I % BLOCK_SIZE:
            raise ValueError(f"the hidden ({H}) and intermediate ({I}) sizes must be multiples of "
                             f"{BLOCK_SIZE} (MXFP4 expert blocks)")
        if not isinstance(experts_per_token, int) or not 1 <= experts_per_token <= E:
            raise ValueError(f"experts_per_token must be an int from 1 to E={E}, got {experts_per_token!r}")
        self.num_experts, self.hidden_size, self.intermediate_size = E, H, I
        self.experts_per_token = experts_per_token
        self.swiglu_alpha, self.swiglu_limit = float(swiglu_alpha), float(swiglu_limit)
        self.scale_rule, self.enabled = scale_rule, True
        for name, t in tensors.items():
            setattr(self, name, master_param(t, master_dtype))

    @classmethod
    def from_moe(cls, moe: MoE, *, scale_rule: str = "floor", master_dtype=None) -> "QATMoE":
        """The twin of an mxfp4.nn.MoE: experts dequantized to float32 (then `master_dtype`,
        default float32), router and biases copied (default: in their dtype)."""
        if not isinstance(moe, MoE):
            raise TypeError(f"QATMoE.from_moe expects an mxfp4.nn.MoE, got {type(moe).__name__}")
        w1, w2 = moe.w1.dequantize(torch.float32), moe.w2.dequantize(torch.float32)
        if master_dtype is not None:
            w1, w2 = w1.to(master_dtype), w2.to(master_dtype)
        return cls(moe.router_weight, moe.router_bias, w1, moe.b1, w2, moe.b2,
                   experts_per_token=moe.experts_per_token, swiglu_alpha=moe.swiglu_alpha,
                   swiglu_limit=moe.swiglu_limit, scale_rule=scale_rule, master_dtype=master_dtype)

    def expert_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(w1, w2) as the forward uses them: MXFP4-rounded float32 when enabled."""
        if not self.enabled:
            return self.w1.float(), self.w2.float()
        return tuple(fake_quantize(w, axis=-1, block_size=BLOCK_SIZE, scale_rule=self.scale_rule)
                     for w in (self.w1, self.w2))

    def forward(self, x: torch.Tensor, *, backend: str = "auto", config=None) -> torch.Tensor:
        """x [T, H] or [B, S, H] -> same shape and dtype. `backend` and `config` are MoE.forward's,
        accepted so that QATMoE stands in for it; QAT always runs torch ops (any device)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not isinstance(x, torch.Tensor) or x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"QATMoE expects a float tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() not in (2, 3) or x.shape[-1] != self.hidden_size:
            raise ValueError(f"QATMoE expects input [T, {self.hidden_size}] or [B, S, "
                             f"{self.hidden_size}], got {tuple(x.shape)}")
        w1, w2 = self.expert_weights()
        out = moe_float(x.reshape(-1, self.hidden_size), self.router_weight, self.router_bias, w1,
                        self.b1, w2, self.b2, self.experts_per_token, self.swiglu_alpha,
                        self.swiglu_limit)
        return out.reshape(x.shape)

    def to_mx(self) -> MoE:
        """The mxfp4.nn.MoE holding the codes this layer's forward uses; router and biases as
        trained, in their master dtype."""
        q1 = quantize(self.w1.detach(), axis=-1, scale_rule=self.scale_rule)
        q2 = quantize(self.w2.detach(), axis=-1, scale_rule=self.scale_rule)
        copy = {n: getattr(self, n).detach().clone() for n in ("router_weight", "router_bias", "b1", "b2")}
        return MoE(copy["router_weight"], copy["router_bias"], q1, copy["b1"], q2, copy["b2"],
                   experts_per_token=self.experts_per_token, swiglu_alpha=self.swiglu_alpha,
                   swiglu_limit=self.swiglu_limit)

    def extra_repr(self) -> str:
        return (f"experts={self.num_experts}, k={self.experts_per_token}, hidden={self.hidden_size}, "
                f"intermediate={self.intermediate_size}, scale_rule={self.scale_rule!r}, "
                f"enabled={self.enabled}")
