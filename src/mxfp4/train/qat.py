"""Quantization-aware training (QAT): trainable twins of nn.Linear and mxfp4.nn.MoE whose forward
sees the MXFP4 weight, and `convert` back to the deployable MXLinear / MoE.

Forward: W_q = dequantize(quantize(W)), round to nearest with the layer's scale rule and block
size along the input dimension (the reduction axis), in float32; then x·W_qᵀ + b computed as
mxfp4.linear's reference does it (float32 product, then the bias), so that `convert`, which
stores the codes of the same quantize call, gives a bit-identical forward.

Backward: the plain straight-through estimator, dL/dW = dL/dW_q. We do not zero the gradient of
elements the scale clips (the "clipped STE"): under the floor rule the clipped elements are the
block's largest ones, and they set the block's scale. Masking them would freeze exactly the
weights that decide the grid of the whole block, in both directions, and the clip boundary moves
with them anyway (it is relative to the block max), so the identity is the better estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..algorithms.hadamard import rotate
from ..codec import FLOAT_DTYPES, SCALE_RULES
from ..format import BLOCK_SIZE
from ..nn.convert import _set_module, matches, select_modules
from ..nn.linear import MXLinear, is_linear, linear_weight, quantize_weight
from ..ops import quantize

MASTER_DTYPES = (torch.float32, torch.bfloat16)
HEAD_NAMES = ("unembedding",)  # LM heads select_modules does not know by name (GptOss)


class _FakeQuantize(torch.autograd.Function):
    """dequantize(quantize(x)) in float32; the gradient passes unchanged (straight-through)."""

    @staticmethod
    def forward(ctx, x, axis: int, block_size: int, scale_rule: str):
        ctx.dtype = x.dtype
        q = quantize(x.detach(), axis=axis, block_size=block_size, scale_rule=scale_rule)
        return q.dequantize(torch.float32)

    @staticmethod
    def backward(ctx, grad):
        return grad.to(ctx.dtype), None, None, None


def fake_quantize(x: torch.Tensor, *, axis: int = -1, block_size: int = BLOCK_SIZE,
                  scale_rule: str = "floor") -> torch.Tensor:
    """x rounded to MXFP4 (nearest, blocks along `axis`) and back, float32, with an identity
    gradient. The whole tensor goes through one vectorized mxfp4.quantize call (the codec on
    the CPU, the Triton kernel on CUDA)."""
    return _FakeQuantize.apply(x, axis, block_size, scale_rule)


def check_options(scale_rule, block_size, master_dtype) -> None:
    if scale_rule not in SCALE_RULES:
        raise ValueError(f"scale_rule must be one of {SCALE_RULES}, got {scale_rule!r}")
    if (not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 2
            or block_size > 1024 or block_size & (block_size - 1)):
        raise ValueError(f"block_size must be a power of two from 2 to 1024, got {block_size!r}")
    if master_dtype is not None and master_dtype not in MASTER_DTYPES:
        raise ValueError(f"master_dtype must be None (keep the layer's dtype), torch.float32 or "
                         f"torch.bfloat16, got {master_dtype!r}")


def master_param(t: torch.Tensor, master_dtype) -> nn.Parameter:
    """A trainable copy of `t` in `master_dtype` (None: t's dtype if bf16/fp32, else fp32)."""
    dtype = master_dtype or (t.dtype if t.dtype in MASTER_DTYPES else torch.float32)
    return nn.Parameter(t.detach().to(dtype).clone())


class QATLinear(nn.Module):
    """nn.Linear with a trainable master weight [out, in] whose forward uses its MXFP4 rounding.

    `enabled = False` switches quantization off: the layer is then exactly F.linear on the
    master weight (outputs and gradients of nn.Linear). `activations=True` rounds the input to
    MXFP4 too (W4A4, blocks along the last axis, the same scale rule). `hadamard=True` rotates
    the weight's input dimension and the input in blocks before rounding, as MXLinear does.
    The product is mxfp4.linear's reference (float32, then the bias), except for bf16 inputs on
    CUDA, which multiply on the bf16 tensor cores (the MXFP4 weight is exact in bf16) for speed.
    The new Parameters are trainable whatever the replaced layer's were.
    Reference twin of the converted layer: mxfp4.nn.MXLinear (see `to_mx`).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                 scale_rule: str = "floor", block_size: int = BLOCK_SIZE,
                 activations: bool = False, hadamard: bool = False, master_dtype=None):
        super().__init__()
        check_options(scale_rule, block_size, master_dtype)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.dtype not in FLOAT_DTYPES:
            raise ValueError(f"QATLinear needs a 2-D float weight [out, in], got "
                             f"{getattr(weight, 'shape', type(weight).__name__)}")
        out_features, in_features = weight.shape
        if in_features % block_size:
            raise ValueError(f"in_features {in_features} is not a multiple of the block size {block_size}")
        if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (out_features,)):
            raise ValueError(f"bias must be a tensor of shape ({out_features},)")
        self.in_features, self.out_features = in_features, out_features
        self.scale_rule, self.block_size = scale_rule, block_size
        self.activations, self.hadamard = bool(activations), bool(hadamard)
        self.enabled = True
        self.weight = master_param(weight, master_dtype)
        self.bias = None if bias is None else master_param(bias, master_dtype)

    @classmethod
    def from_linear(cls, layer: nn.Module, **options) -> "QATLinear":
        """The QAT twin of an nn.Linear (or a transformers Conv1D, whose weight is transposed)."""
        if not is_linear(layer):
            raise TypeError(f"QATLinear.from_linear expects an nn.Linear or a transformers Conv1D, "
                            f"got {type(layer).__name__}")
        return cls(linear_weight(layer), layer.bias, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return F.linear(x, self.weight, self.bias)
        w = self.weight
        if self.hadamard:  # as MXLinear: input rotated in its dtype, weight in float32
            x, w = rotate(x, self.block_size), rotate(w.float(), self.block_size)
        wq = fake_quantize(w, axis=1, block_size=self.block_size, scale_rule=self.scale_rule)
        xf = (fake_quantize(x, axis=-1, block_size=self.block_size, scale_rule=self.scale_rule)
              if self.activations else x.float())
        if x.is_cuda and x.dtype == torch.bfloat16:  # tensor cores; MXFP4 values are exact in bf16
            bias = None if self.bias is None else self.bias.to(x.dtype)
            return F.linear(xf.to(x.dtype), wq.to(x.dtype), bias)
        y = xf @ wq.T  # mxfp4.linear's reference: float32 product, then the bias
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype)

    def to_mx(self) -> MXLinear:
        """The MXLinear holding the codes this layer's forward uses (its weights only: an MXLinear
        keeps activations in high precision)."""
        mx = quantize_weight(self.weight, scale_rule=self.scale_rule, block_size=self.block_size,
                             hadamard=self.hadamard)
        bias = None if self.bias is None else self.bias.detach().clone()
        return MXLinear(mx, bias, hadamard=self.hadamard)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, block_size={self.block_size}, "
                f"scale_rule={self.scale_rule!r}, activations={self.activations}, "
                f"hadamard={self.hadamard}, enabled={self.enabled}")


@dataclass
class QATSummary:
    """What prepare_qat swapped: QATLinear and QATMoE names, and skipped candidates with reasons."""

    scale_rule: str
    block_size: int
    activations: bool
    hadamard: bool
    linears: list[str] = field(default_factory=list)
    moes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def swapped(self) -> int:
        return len(self.linears) + len(self.moes)


def _select_linears(model, include, exclude, block_size) -> tuple[dict, dict]:
    """quantize_model's selection (patterns, LM head, routers) without embeddings; a layer the
    block size does not divide is an error here (QAT of a model minus that layer would be a
    surprise), and GptOss's `unembedding` counts as the LM head."""
    chosen, skipped = select_modules(model, include=include, exclude=exclude, block_size=block_size)
    wanted, _ = select_modules(model, include=include, exclude=exclude, block_size=1)  # any size
    bad = [n for n in wanted if n not in chosen]
    if bad:
        k = linear_weight(wanted[bad[0]]).shape[1]
        raise ValueError(f"block_size {block_size} does not divide layer {bad[0]!r} (input size "
                         f"{k}); {len(bad)} layer(s) so: choose another block size or exclude them")
    for name in [n for n in chosen if n.split(".")[-1] in HEAD_NAMES and n not in (include or ())]:
        del chosen[name]
        skipped[name] = "LM head (kept by default)"
    return chosen, skipped


def prepare_qat(model: nn.Module, *, scale_rule: str = "floor", block_size: int = BLOCK_SIZE,
                include=None, exclude=None, activations: bool = False, hadamard: bool = False,
                master_dtype=None) -> QATSummary:
    """Swap the model's nn.Linear layers for QATLinear and its mxfp4.nn.MoE layers (GptOss's
    `blocks.{i}.mlp.moe`) for QATMoE, in place; return a QATSummary.

    Selection as in quantize_model (glob or `re:` patterns on module names; the LM head, MoE
    routers and embeddings are kept unless an include pattern names them exactly); an MoE is
    taken when the patterns allow its module name. Master weights are trainable Parameters in
    `master_dtype` (None: the layer's dtype when bf16 or fp32; float32 for MXFP4 experts).
    The experts need blocks of 32 (mxfp4.nn.MoE's layout: another block_size is an error
    unless they are excluded) and ignore `activations` and `hadamard`. Nothing is swapped
    when an error is raised.
    """
    from ..nn.moe import MoE
    from .qat_moe import QATMoE

    check_options(scale_rule, block_size, master_dtype)
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare_qat expects a torch.nn.Module, got {type(model).__name__}")
    summary = QATSummary(scale_rule, block_size, bool(activations), bool(hadamard))
    linears, summary.skipped = _select_linears(model, include, exclude, block_size)
    moes = {}
    for name, mod in model.named_modules():
        if isinstance(mod, MoE):
            if include and not matches(name, include):
                continue
            if matches(name, exclude):
                summary.skipped[name] = "excluded by pattern"
                continue
            moes[name] = mod
    if not linears and not moes:
        found = "; skipped: " + ", ".join(f"{n} ({why})" for n, why in summary.skipped.items())
        raise ValueError("prepare_qat found no nn.Linear layer or mxfp4.nn.MoE to swap"
                         + (found if summary.skipped else " (the model has none)"))
    if "" in linears or "" in moes:
        raise ValueError("prepare_qat swaps layers inside a model; for a lone layer use "
                         "QATLinear.from_linear or QATMoE.from_moe")
    if moes and block_size != BLOCK_SIZE:
        raise ValueError(f"mxfp4.nn.MoE experts use blocks of {BLOCK_SIZE}; block_size "
                         f"{block_size} cannot apply to {next(iter(moes))!r} (exclude the MoE "
                         f"layers or use {BLOCK_SIZE})")
    options = dict(scale_rule=scale_rule, block_size=block_size, activations=activations,
                   hadamard=hadamard, master_dtype=master_dtype)
    for name, layer in linears.items():
        _set_module(model, name, QATLinear.from_linear(layer, **options))
        summary.linears.append(name)
    for name, moe in moes.items():
        _set_module(model, name, QATMoE.from_moe(moe, scale_rule=scale_rule, master_dtype=master_dtype))
        summary.moes.append(name)
    return summary


def set_quantization(model: nn.Module, enabled: bool) -> int:
    """Switch the MXFP4 rounding of every QAT layer on or off; return how many were set."""
    from .qat_moe import QATMoE

    layers = [m for m in model.modules() if isinstance(m, (QATLinear, QATMoE))]
    for m in layers:
        m.enabled = bool(enabled)
    return len(layers)


def convert(model: nn.Module, *, strict: bool = True) -> nn.Module:
    """Replace each QATLinear by an MXLinear and each QATMoE by an mxfp4.nn.MoE holding exactly
    the codes the QAT forward used; return the model (changed in place).

    The converted forward is bit-identical to the QAT forward on the CPU reference path. A W4A4
    layer (activations=True) cannot be: MXLinear keeps activations in high precision, so it is
    an error unless strict=False (then only its weights are exported). A layer switched off
    (enabled False) is converted too: its codes are those the enabled forward would use.
    """
    from .qat_moe import QATMoE

    targets = {n: m for n, m in model.named_modules() if isinstance(m, (QATLinear, QATMoE))}
    if not targets:
        raise ValueError("convert found no QATLinear or QATMoE layer: run mxfp4.train.prepare_qat first")
    if strict:
        w4a4 = [n for n, m in targets.items() if isinstance(m, QATLinear) and m.activations]
        if w4a4:
            raise ValueError(f"{w4a4[0]!r} was trained with MXFP4 activations (W4A4); MXLinear keeps "
                             f"activations in high precision, so its forward would differ. Pass "
                             f"strict=False to export the weights anyway")
    for name, mod in targets.items():
        _set_module(model, name, mod.to_mx())
    return model
