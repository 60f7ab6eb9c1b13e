"""GPT-OSS Mixture-of-Experts layer with MXFP4 expert weights.

router: logits = x @ Wr.T + br; top-k experts per token; softmax over the k selected logits.
expert e: h = x @ W1[e].T + b1[e], W1 [2I, H] with even rows = gate, odd rows = linear;
          gate = min(gate, limit), lin = clamp(lin, -limit, limit),
          a = gate * sigmoid(alpha * gate) * (lin + 1); y_e = a @ W2[e].T + b2[e], W2 [H, I].
output: sum over the k experts of weight * y_e.

Router logits are kept in fp32 (GPT-OSS rounds its bf16 linear's output to bf16; this only
matters for near-ties). Ties are broken deterministically: of equal logits the lower expert
index is selected first, in both the reference and the Triton path.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..codec import FLOAT_DTYPES, dequantize_blocks
from ..format import BLOCK_SIZE
from ..layouts import pack, unpack
from ..ops import quantize
from ..tensor import MXTensor

ALPHA = 1.702
LIMIT = 7.0
BACKENDS = ("auto", "triton", "reference")
ROW_PAD = 64  # expert rows are padded to the smallest weight tile of the kernels
_FUSED_MAX_SCALE = 128  # up to here the kernels decode and scale in one bf16 multiply


def route_reference(x: torch.Tensor, router_w: torch.Tensor, router_b: torch.Tensor,
                    k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(expert ids [T, k] int64, weights [T, k] fp32): fp32 logits, stable descending sort."""
    logits = x.float() @ router_w.float().T + router_b.float()
    vals, ids = torch.sort(logits, dim=-1, descending=True, stable=True)
    return ids[:, :k], torch.softmax(vals[:, :k], dim=-1)


def swiglu(h: torch.Tensor, alpha: float = ALPHA, limit: float = LIMIT) -> torch.Tensor:
    """GPT-OSS SwiGLU on interleaved columns: even = gate, odd = linear."""
    gate, lin = h[..., 0::2], h[..., 1::2]
    gate = gate.clamp(max=limit)
    lin = lin.clamp(-limit, limit)
    return gate * torch.sigmoid(alpha * gate) * (lin + 1)


def _expert_weight(codes: torch.Tensor, scales: torch.Tensor, e: int, n: int, k: int) -> torch.Tensor:
    """Expert e's float32 weight [n, k] from the packed expert layout (see MoE)."""
    c, s = unpack(codes[e], scales[e], n, k)
    return dequantize_blocks(c, s, torch.Size((n, k)), 1, BLOCK_SIZE)


def moe_reference(x, router_w, router_b, w1_codes, w1_scales, b1, w2_codes, w2_scales, b2,
                  k: int, alpha: float = ALPHA, limit: float = LIMIT) -> torch.Tensor:
    """Plain fp32 MoE on x [T, H]: a loop over experts, each expert's weights dequantized once.
    Expert weights in the packed layout of MoE."""
    ids, weights = route_reference(x, router_w, router_b, k)
    H, I = router_w.shape[1], b1.shape[1] // 2
    xf = x.float()
    out = torch.zeros(x.shape[0], H, dtype=torch.float32, device=x.device)
    for e in torch.unique(ids).tolist():
        tok, slot = (ids == e).nonzero(as_tuple=True)
        h = xf[tok] @ _expert_weight(w1_codes, w1_scales, e, 2 * I, H).T + b1[e].float()
        y = swiglu(h, alpha, limit) @ _expert_weight(w2_codes, w2_scales, e, H, I).T + b2[e].float()
        out.index_add_(0, tok, y * weights[tok, slot, None])
    return out.to(x.dtype)


def _check_float(name: str, t, shape) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _check_mx(name: str, w, shape) -> None:
    if not isinstance(w, MXTensor):
        raise TypeError(f"{name} must be an MXTensor, got {type(w).__name__}")
    if tuple(w.shape) != tuple(shape) or w.axis != 2 or w.block_size != BLOCK_SIZE:
        raise ValueError(f"{name} must be an MXTensor of shape {tuple(shape)} with blocks of "
                         f"{BLOCK_SIZE} along the last axis, got shape {tuple(w.shape)}, "
                         f"axis={w.axis}, block_size={w.block_size}")


class MoE(torch.nn.Module):
    """GPT-OSS MoE layer; expert weights in MXFP4, biases as given.

    w1: MXTensor [E, 2I, H], w2: MXTensor [E, H, I], both in blocks of 32 along the last axis;
    router_weight [E, H], router_bias [E], b1 [E, 2I], b2 [E, H] float tensors.

    The experts are stored once, in the kernels' layout (`mxfp4.layouts.pack` per expert,
    rows padded to 64): buffers w1_codes [E, Np, Kp/2] and w1_scales [E, Kp/32, Np], same for
    w2. The conversion is lossless; `w1` / `w2` give the MXTensors back exactly.
    """

    def __init__(self, router_weight, router_bias, w1: MXTensor, b1, w2: MXTensor, b2, *,
                 experts_per_token: int = 4, swiglu_alpha: float = ALPHA,
                 swiglu_limit: float = LIMIT):
        super().__init__()
        if not isinstance(w1, MXTensor) or len(w1.shape) != 3:
            raise ValueError(f"w1 must be a 3-D MXTensor [E, 2I, H], got {w1!r}")
        E, n2, H = w1.shape
        if n2 % 2:
            raise ValueError(f"w1 has {n2} rows per expert; GPT-OSS needs an even 2I (gate, linear)")
        I = n2 // 2
        _check_mx("w1", w1, (E, 2 * I, H))
        _check_mx("w2", w2, (E, H, I))
        _check_float("router_weight", router_weight, (E, H))
        _check_float("router_bias", router_bias, (E,))
        _check_float("b1", b1, (E, 2 * I))
        _check_float("b2", b2, (E, H))
        if not isinstance(experts_per_token, int) or not 1 <= experts_per_token <= E:
            raise ValueError(f"experts_per_token must be an int from 1 to E={E}, got {experts_per_token!r}")
        self.num_experts, self.hidden_size, self.intermediate_size = E, H, I
        self.experts_per_token = experts_per_token
        self.swiglu_alpha, self.swiglu_limit = float(swiglu_alpha), float(swiglu_limit)
        self.scale_rule = w1.scale_rule
        self.register_buffer("router_weight", router_weight)
        self.register_buffer("router_bias", router_bias)
        # One look at the scales now, so that the forward never has to: the kernels' one-multiply
        # decode is exact for scale bytes up to 128 (|w| <= 12).
        self._fused = max(int(w1.scales.max()), int(w2.scales.max())) <= _FUSED_MAX_SCALE
        c1, s1 = pack(w1.codes, w1.scales, 2 * I, H, ROW_PAD)
        self.register_buffer("w1_codes", c1)
        self.register_buffer("w1_scales", s1)
        self.register_buffer("b1", b1)
        c2, s2 = pack(w2.codes, w2.scales, H, I, ROW_PAD)
        self.register_buffer("w2_codes", c2)
        self.register_buffer("w2_scales", s2)
        self.register_buffer("b2", b2)

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_float(cls, router_w, router_b, w1, b1, w2, b2, *, scale_rule: str = "floor",
                   experts_per_token: int = 4, **kwargs) -> "MoE":
        """Quantize float expert weights w1 [E, 2I, H] and w2 [E, H, I] along their last axis."""
        for name, t in (("w1", w1), ("w2", w2)):
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                raise ValueError(f"{name} must be a 3-D float tensor, got {getattr(t, 'shape', type(t).__name__)}")
            if t.dtype in FLOAT_DTYPES and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or Inf")
        q1 = quantize(w1, axis=-1, scale_rule=scale_rule)
        q2 = quantize(w2, axis=-1, scale_rule=scale_rule)
        return cls(router_w, router_b, q1, b1, q2, b2, experts_per_token=experts_per_token, **kwargs)

    @classmethod
    def from_checkpoint(cls, tensors: Mapping[str, torch.Tensor], layer: int, *,
                        experts_per_token: int = 4, device=None, **kwargs) -> "MoE":
        """Layer `layer` from gpt-oss or Hugging Face checkpoint tensors, without re-quantizing.

        The naming is detected from the keys (see mxfp4.io.gpt_oss); blocks and scales are
        wrapped as they are (moved to `device` if given).
        """
        from ..io.gpt_oss import moe_layer_tensors

        t = moe_layer_tensors(tensors, layer)
        if device is not None:
            t = t.to(device)
        w1 = MXTensor.from_gpt_oss(t.w1_blocks, t.w1_scales)
        w2 = MXTensor.from_gpt_oss(t.w2_blocks, t.w2_scales)
        return cls(t.router_weight, t.router_bias, w1, t.b1, w2, t.b2,
                   experts_per_token=experts_per_token, **kwargs)

    # -- views --------------------------------------------------------------------------------
    @property
    def w1(self) -> MXTensor:
        """The expert weights W1 [E, 2I, H] as an MXTensor (unpacked: a copy)."""
        E, I, H = self.num_experts, self.intermediate_size, self.hidden_size
        c, s = unpack(self.w1_codes, self.w1_scales, 2 * I, H)
        return MXTensor(c, s, (E, 2 * I, H), 2, BLOCK_SIZE, self.scale_rule)

    @property
    def w2(self) -> MXTensor:
        """The expert weights W2 [E, H, I] as an MXTensor (unpacked: a copy)."""
        E, I, H = self.num_experts, self.intermediate_size, self.hidden_size
        c, s = unpack(self.w2_codes, self.w2_scales, H, I)
        return MXTensor(c, s, (E, H, I), 2, BLOCK_SIZE, self.scale_rule)

    def extra_repr(self) -> str:
        return (f"experts={self.num_experts}, k={self.experts_per_token}, hidden={self.hidden_size}, "
                f"intermediate={self.intermediate_size}, scale_rule={self.scale_rule!r}")

    # -- forward ------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"MoE expects a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"MoE expects bfloat16, float16 or float32 input, got {x.dtype}")
        if x.dim() not in (2, 3) or x.shape[-1] != self.hidden_size:
            raise ValueError(f"MoE expects input [T, {self.hidden_size}] or [B, S, {self.hidden_size}], "
                             f"got {tuple(x.shape)}")
        if x.device != self.w1_codes.device:
            raise ValueError(f"input is on {x.device} but the MoE weights are on {self.w1_codes.device}")
        return x.reshape(-1, self.hidden_size)

    def _args(self):
        return (self.router_weight, self.router_bias, self.w1_codes, self.w1_scales, self.b1,
                self.w2_codes, self.w2_scales, self.b2, self.experts_per_token)

    def forward(self, x: torch.Tensor, *, backend: str = "auto", config=None) -> torch.Tensor:
        """x [T, H] or [B, S, H] -> same shape and dtype.

        backend "auto": the Triton path on CUDA, the reference elsewhere; "triton" forces the
        kernels (on CPU only under TRITON_INTERPRET=1); "reference" the fp32 loop over experts.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        x2 = self._check_input(x)
        if backend == "reference" or (backend == "auto" and x.device.type != "cuda"):
            out = moe_reference(x2, *self._args(), self.swiglu_alpha, self.swiglu_limit)
        else:
            from ..kernels.moe import moe_forward

            out = moe_forward(x2, *self._args(), self.swiglu_alpha, self.swiglu_limit,
                              fused=self._fused, config=config)
        return out.reshape(x.shape)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference routing of x: (expert ids [T, k], weights [T, k])."""
        return route_reference(self._check_input(x), self.router_weight, self.router_bias,
                               self.experts_per_token)
