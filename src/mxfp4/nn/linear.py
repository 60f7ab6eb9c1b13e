"""MXLinear: a drop-in for nn.Linear whose weight is stored as MXFP4."""

from __future__ import annotations

import sys

import torch
from torch import nn

from ..algorithms.hadamard import rotate
from ..format import BLOCK_SIZE
from ..ops import linear, quantize
from ..tensor import MXTensor

METHODS = ("rtn", "gptq")  # how the codes were chosen; recorded in checkpoints


class MXLinear(nn.Module):
    """y = x · Wᵀ + b with W [out, in] held as MXFP4 codes and E8M0 scales along `in`.

    The bias stays in high precision. With `hadamard=True` the stored weight is W·diag(H, ...)
    (see mxfp4.algorithms.hadamard) and the input is rotated the same way before the product,
    so the layer computes x·Wᵀ up to rounding. The forward goes through `mxfp4.linear`.
    """

    def __init__(self, weight: MXTensor, bias: torch.Tensor | None = None, *,
                 hadamard: bool = False, method: str = "rtn"):
        super().__init__()
        if not isinstance(weight, MXTensor):
            raise TypeError(f"MXLinear needs an MXTensor weight, got {type(weight).__name__}")
        if len(weight.shape) != 2 or weight.axis != 1:
            raise ValueError(f"MXLinear needs a 2-D weight quantized along its input dimension "
                             f"(axis 1), got shape {tuple(weight.shape)} axis {weight.axis}")
        out_features, in_features = weight.shape
        if in_features % weight.block_size:
            raise ValueError(f"in_features {in_features} is not a multiple of the block size "
                             f"{weight.block_size}")
        if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (out_features,)):
            raise ValueError(f"bias must be a tensor of shape ({out_features},)")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.in_features, self.out_features = in_features, out_features
        self.block_size, self.scale_rule = weight.block_size, weight.scale_rule
        self.hadamard, self.method = bool(hadamard), method
        self.register_buffer("weight_codes", weight.codes)
        self.register_buffer("weight_scales", weight.scales)
        if bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, layer: nn.Module, *, scale_rule: str = "floor",
                    block_size: int = BLOCK_SIZE, hadamard: bool = False) -> "MXLinear":
        """Round-to-nearest MXFP4 copy of `layer`, an nn.Linear or a transformers Conv1D
        (scale rule floor, ceil, even or mse)."""
        if not is_linear(layer):
            raise TypeError(f"from_linear expects an nn.Linear or a transformers Conv1D, got "
                            f"{type(layer).__name__}")
        mx = quantize_weight(linear_weight(layer), scale_rule=scale_rule, block_size=block_size,
                             hadamard=hadamard)
        return cls(mx, layer.bias, hadamard=hadamard)

    @property
    def weight_mx(self) -> MXTensor:
        """The stored weight as an MXTensor (rotated if `hadamard`)."""
        return MXTensor(self.weight_codes, self.weight_scales, (self.out_features, self.in_features),
                        axis=1, block_size=self.block_size, scale_rule=self.scale_rule)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight this layer stands for, with the rotation undone."""
        w = self.weight_mx.dequantize(torch.float32)
        return (rotate(w, self.block_size) if self.hadamard else w).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hadamard:
            x = rotate(x, self.block_size)
        return linear(x, self.weight_mx, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, block_size={self.block_size}, "
                f"scale_rule={self.scale_rule!r}, method={self.method!r}, hadamard={self.hadamard}")


def is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2 and kin): y = x·W + b, a Linear whose weight is stored [in, out].

    Looked up among the loaded modules: a model holding one has imported transformers already,
    and mxfp4 does not need transformers otherwise.
    """
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    return conv1d is not None and isinstance(module, conv1d)


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_conv1d(module)


def linear_weight(module: nn.Module, weight: torch.Tensor | None = None) -> torch.Tensor:
    """`weight` (default: the module's own) laid out [out, in] as MXLinear holds it: a Conv1D's
    [in, out] weight is transposed (a view, no copy)."""
    w = module.weight if weight is None else weight
    return w.T if is_conv1d(module) else w


def quantize_weight(weight: torch.Tensor, *, scale_rule: str = "floor", block_size: int = BLOCK_SIZE,
                    hadamard: bool = False) -> MXTensor:
    """Round-to-nearest MXTensor of a Linear weight [out, in], rotated first if `hadamard`."""
    w = weight.detach()
    if w.dim() != 2:
        raise ValueError(f"a Linear weight is 2-D, got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise ValueError("the weight contains NaN or Inf")
    if hadamard:
        w = rotate(w.float(), block_size)
    return quantize(w, axis=1, block_size=block_size, scale_rule=scale_rule)
