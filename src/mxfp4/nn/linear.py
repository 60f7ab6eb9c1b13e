"""MXLinear: a drop-in for nn.Linear whose weight is stored as MXFP4."""

from __future__ import annotations

import sys

import torch
from torch import nn

from ..algorithms.hadamard import rotate
from ..format import BLOCK_SIZE
from ..layouts import HopperWeight
from ..ops import linear, quantize
from ..tensor import MXTensor

METHODS = ("rtn", "gptq")  # how the codes were chosen; recorded in checkpoints
PORTABLE = ("weight_codes", "weight_scales")  # the state_dict names of the weight, in every layout


class MXLinear(nn.Module):
    """y = x · Wᵀ + b with W [out, in] held as MXFP4 codes and E8M0 scales along `in`.

    The bias stays in high precision. With `hadamard=True` the stored weight is W·diag(H, ...)
    (see mxfp4.algorithms.hadamard) and the input is rotated the same way before the product,
    so the layer computes x·Wᵀ up to rounding. The forward goes through `mxfp4.linear`.

    Layout: on a CUDA device the weight is held in the kernel layout `mxfp4.layouts.HopperWeight`
    (buffers `packed_codes`, `packed_scales`), the one `mxfp4.linear` reads fastest; elsewhere
    in the portable MXTensor layout (buffers `weight_codes`, `weight_scales`). Only one of the
    two is held. The weight is repacked when it changes device (`.to`, `.cuda`, `.cpu`, or
    construction from CUDA tensors), never per forward; `prepack()` / `unpack()` choose the
    layout by hand until the next move, `packed` tells which is held. Blocks other than 32
    stay portable (the kernel layout needs 32). In every layout `state_dict()` holds the
    portable `weight_codes` / `weight_scales` (the same bytes), `load_state_dict` takes
    them, and `weight_codes`, `weight_scales` and `weight_mx` read as the portable tensors
    (computed from the packed layout when that is held).
    """

    def __init__(self, weight: MXTensor, bias: torch.Tensor | None = None, *,
                 hadamard: bool = False, method: str = "rtn", packed: bool | None = None):
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
        # the HopperWeight layout; None while the portable one is held (and the other way round)
        self.register_buffer("packed_codes", None, persistent=False)
        self.register_buffer("packed_scales", None, persistent=False)
        self._max_scale = 255  # HopperWeight.max_scale of the packed layout
        self._hopper_weight = None  # the HopperWeight over the packed buffers, built once
        if bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = nn.Parameter(bias.detach(), requires_grad=False)
        if packed is None:  # pass packed=False to keep sharing the given tensors (a tied head)
            packed = _packs_on(weight.codes.device) and self.block_size == BLOCK_SIZE
        if packed:
            self.prepack()

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
        """The stored weight as an MXTensor (rotated if `hadamard`); unpacked afresh from the
        kernel layout when that is held."""
        if self.packed:
            return self.kernel_weight.to_mx()
        return MXTensor(self._buffers["weight_codes"], self._buffers["weight_scales"],
                        (self.out_features, self.in_features), axis=1,
                        block_size=self.block_size, scale_rule=self.scale_rule)

    @property
    def packed(self) -> bool:
        """True while the weight is held in the kernel layout (HopperWeight)."""
        return self._buffers["packed_codes"] is not None

    @property
    def kernel_weight(self) -> MXTensor | HopperWeight:
        """The weight as the forward passes it to mxfp4.linear: a HopperWeight when packed."""
        if not self.packed:
            return self.weight_mx
        codes, scales = self._buffers["packed_codes"], self._buffers["packed_scales"]
        hw = self._hopper_weight
        if hw is None or hw.codes is not codes or hw.scales is not scales:
            hw = self._hopper_weight = HopperWeight(
                codes, scales, (self.out_features, self.in_features), self.scale_rule,
                self._max_scale)
        return hw

    def prepack(self) -> "MXLinear":
        """Hold the weight in the kernel layout (any device; CUDA does it by itself); lossless."""
        if self.block_size != BLOCK_SIZE:
            raise ValueError(f"the kernel layout needs blocks of {BLOCK_SIZE}, this layer has "
                             f"blocks of {self.block_size}")
        if not self.packed:
            self._hold(HopperWeight.from_mx(self.weight_mx))
        return self

    def unpack(self) -> "MXLinear":
        """Hold the weight in the portable MXTensor layout; lossless."""
        if self.packed:
            mx = self.weight_mx
            self._buffers["packed_codes"] = self._buffers["packed_scales"] = None
            self._buffers["weight_codes"], self._buffers["weight_scales"] = mx.codes, mx.scales
            self._hopper_weight = None
        return self

    def _hold(self, hw: HopperWeight) -> None:
        self._buffers["weight_codes"] = self._buffers["weight_scales"] = None
        self._buffers["packed_codes"], self._buffers["packed_scales"] = hw.codes, hw.scales
        self._max_scale, self._hopper_weight = hw.max_scale, None

    def __getattr__(self, name: str):
        # weight_codes / weight_scales read as the portable tensors in either layout
        if name in PORTABLE and self.__dict__.get("_buffers", {}).get("packed_codes") is not None:
            mx = self.weight_mx
            return mx.codes if name == "weight_codes" else mx.scales
        return super().__getattr__(name)

    def _apply(self, fn, recurse: bool = True):
        """Module.to / cuda / cpu / half ...: the layout follows the weight's device when it
        changes (kernel layout on CUDA, portable elsewhere); the weight is packed on arrival."""
        before = self._weight_device()
        self._hopper_weight = None  # holds the old tensors
        super()._apply(fn, recurse)
        after = self._weight_device()
        if after != before:
            if _packs_on(after) and self.block_size == BLOCK_SIZE:
                self.prepack()
            else:
                self.unpack()
        return self

    def _weight_device(self) -> torch.device:
        return self._buffers["packed_codes" if self.packed else "weight_codes"].device

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)  # bias (+ the portable pair)
        if self.packed:  # the same names, shapes and bytes as the portable layout
            mx = self.weight_mx
            destination[prefix + "weight_codes"] = mx.codes
            destination[prefix + "weight_scales"] = mx.scales

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        """The portable weight_codes / weight_scales, into either layout."""
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if not self.packed:
            return  # the portable buffers: loaded (and shape-checked) above
        names = [prefix + n for n in PORTABLE]
        unexpected_keys[:] = [k for k in unexpected_keys if k not in names]
        if any(n not in state_dict for n in names):
            missing_keys.extend(n for n in names if n not in state_dict)
            return
        codes, scales = (state_dict[n] for n in names)
        want = self._portable_shapes()
        for name, t, shape in zip(names, (codes, scales), want):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.shape != shape:
                error_msgs.append(f"{name}: expected a uint8 tensor of shape {tuple(shape)} "
                                  f"(MXFP4 {'codes' if 'codes' in name else 'scales'} of a "
                                  f"{self.out_features}x{self.in_features} weight), got "
                                  f"{_describe(t)}")
                return
        dev = self._buffers["packed_codes"].device
        mx = MXTensor(codes.to(dev), scales.to(dev), (self.out_features, self.in_features),
                      axis=1, block_size=self.block_size, scale_rule=self.scale_rule)
        hw = HopperWeight.from_mx(mx)
        if local_metadata.get("assign_to_params_buffers", False):
            self._hold(hw)
        else:  # into the tensors already held (a captured CUDA graph keeps reading them)
            with torch.no_grad():
                self._buffers["packed_codes"].copy_(hw.codes)
                self._buffers["packed_scales"].copy_(hw.scales)
            self._max_scale, self._hopper_weight = hw.max_scale, None

    def _portable_shapes(self) -> tuple[torch.Size, torch.Size]:
        blocks = self.in_features // self.block_size
        return (torch.Size((self.out_features, blocks * self.block_size // 2)),
                torch.Size((self.out_features, blocks)))

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight this layer stands for, with the rotation undone."""
        w = self.weight_mx.dequantize(torch.float32)
        return (rotate(w, self.block_size) if self.hadamard else w).to(dtype)

    def forward(self, x: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
        """`backend` as in mxfp4.linear ("triton" runs the kernel on CPU under TRITON_INTERPRET=1)."""
        if self.hadamard:
            x = rotate(x, self.block_size)
        return linear(x, self.kernel_weight, self.bias, backend=backend)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, block_size={self.block_size}, "
                f"scale_rule={self.scale_rule!r}, method={self.method!r}, hadamard={self.hadamard}, "
                f"packed={self.packed}")


def _packs_on(device: torch.device) -> bool:
    """Whether a weight arriving on `device` goes into the kernel layout (tests patch this to
    exercise the CUDA rule on the CPU)."""
    return device.type == "cuda"


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} of shape {tuple(t.shape)}"
    return type(t).__name__


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
