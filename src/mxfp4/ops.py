"""Public operations: pick the kernel on CUDA, the reference codec elsewhere.

backend="auto" runs the Triton kernels (mxfp4.kernels) on CUDA tensors and the reference
(mxfp4.codec, plain torch) on everything else; "reference" forces the reference anywhere;
"triton" forces the kernels, which needs CUDA tensors or TRITON_INTERPRET=1 (the Triton
interpreter runs them on CPU tensors, as CI does). There is no silent fallback: on CUDA
without a usable Triton, "auto" raises instead of running the slow reference.

linear also takes backend="ws": the warp-specialized Gluon GEMM (mxfp4.kernels.ws_gemm, issue
24; sm_90 + triton 3.6, bf16 only), and backend="rs": the Gluon GEMM that decodes into wgmma's
register operand (mxfp4.kernels.rs_gemm; same rules, a HopperWeight). Forced, each runs or
raises saying why; "auto" takes one where GLUON_AUTO (below, empty: measured why) names it.
"""

from __future__ import annotations

import importlib
import os
import warnings

import torch

from . import codec
from .format import BLOCK_SIZE
from .layouts import HopperWeight
from .tensor import MXTensor

BACKENDS = ("auto", "triton", "reference")
LINEAR_BACKENDS = BACKENDS + ("ws", "rs")  # the Gluon GEMMs, linear only

# Where backend="auto" takes a Gluon GEMM on sm_90 + triton 3.6: rows (fewest rows of x, most
# rows, backend). Empty: on an H100 (docs/kernels.md, fifth session of issue 24) "rs" on a
# HopperWeight beats v1 at M = 16-256 in CUDA graphs (by 1-39 %), but a Gluon launch costs
# host time that eager callers pay on every call (the MoE layer on the Gluon tiles: 1.1 against
# 0.5 ms a call; the model's eager prefill 1.76x slower), and taking the kernel only inside a
# graph would load it during capture, which CUDA forbids. backend="rs" runs it on request.
GLUON_AUTO: tuple = ()


def _check_backend(backend: str, allowed: tuple = BACKENDS) -> str:
    if backend not in allowed:
        only = f" ({backend!r} is for mxfp4.linear only)" if backend in ("ws", "rs") else ""
        raise ValueError(f"backend must be one of {allowed}, got {backend!r}{only}")
    return backend


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _use_triton(backend: str, device: torch.device) -> bool:
    """True to run the kernel, False for the reference; errors instead of a silent slow path."""
    if backend == "reference":
        return False
    if backend == "auto" and device.type != "cuda":
        return False
    if device.type != "cuda" and not _interpreting():
        raise ValueError(f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 to run the "
                         f"kernels on the CPU), got a tensor on {device}")
    if not _have_triton():
        raise RuntimeError("the Triton kernels need the 'triton' package (pip install triton); "
                           "pass backend='reference' to use the slow reference path")
    return True


_TRITON: list = []  # [True] or [False] once looked up (a per-call import costs microseconds)
_KERNELS: dict = {}


def _kernel_module(name: str):
    """mxfp4.kernels.<name>, imported on first use (Triton loads only when a kernel runs)."""
    mod = _KERNELS.get(name)
    if mod is None:
        mod = _KERNELS[name] = importlib.import_module(f"mxfp4.kernels.{name}")
    return mod


def _have_triton() -> bool:
    if not _TRITON:
        try:
            import triton  # noqa: F401

            _TRITON.append(True)
        except ImportError:
            _TRITON.append(False)
    return _TRITON[0]


def quantize(x: torch.Tensor, *, axis: int = -1, block_size: int = BLOCK_SIZE,
             scale_rule: str = "floor", rounding: str = "nearest", seed: int | None = None,
             backend: str = "auto") -> MXTensor:
    """Quantize `x` to MXFP4 in blocks of `block_size` along `axis`.

    scale_rule: "floor" (OCP MX v1.0), "ceil" (never clips), "even", or "mse".
    rounding: "nearest" (ties to even) or "stochastic" (unbiased inside +-6 * scale;
    pair it with scale_rule="ceil" so that no element is clipped). `seed` makes
    stochastic rounding reproducible on a given device.
    """
    _check_backend(backend)
    axis = codec.check_args(x, axis, block_size, scale_rule, rounding)
    if _use_triton(backend, x.device):
        from .kernels import quantize as kq

        codes, scales = kq.quantize(x, axis, block_size, scale_rule, rounding, seed)
    else:
        codes, scales = codec.quantize_blocks(x, axis, block_size, scale_rule, rounding, seed)
    return MXTensor(codes, scales, x.shape, axis, block_size, scale_rule)


def dequantize(q: MXTensor, dtype: torch.dtype = torch.float32, *, backend: str = "auto") -> torch.Tensor:
    """The tensor an MXTensor stands for, in `dtype` (float32, bfloat16 or float16).

    NaN blocks (scale byte 0xFF) come back as NaN. MXFP4 reaches 6 * 2^127, beyond float32:
    values past the range of `dtype` come back as ±inf, as in any narrowing cast.
    """
    _check_backend(backend)
    if not isinstance(q, MXTensor):
        raise TypeError(f"mxfp4.dequantize expects an MXTensor, got {type(q).__name__}")
    if dtype not in codec.FLOAT_DTYPES:
        raise TypeError(f"dequantize produces float32, bfloat16 or float16, not {dtype}")
    if _use_triton(backend, q.device):
        from .kernels import quantize as kq

        return kq.dequantize(q.codes, q.scales, q.shape, q.axis, q.block_size, dtype)
    return codec.dequantize_blocks(q.codes, q.scales, q.shape, q.axis, q.block_size, dtype)


def _check_mx_along_k(w, name: str) -> None:
    if not isinstance(w, MXTensor):
        raise TypeError(f"{name} must be an MXTensor (see mxfp4.quantize), got {type(w).__name__}")
    if len(w.shape) != 2 or w.axis != 1:
        raise ValueError(f"{name} must be a 2-D MXTensor quantized along its last axis (K), "
                         f"got shape {tuple(w.shape)} with axis={w.axis}")
    if w.shape[1] % w.block_size:
        raise ValueError(f"{name}'s K = {w.shape[1]} is not a multiple of its block size {w.block_size}")


def _rows(x: torch.Tensor) -> int:
    return x.numel() // max(1, x.shape[-1])


def _check_one_device(x, w, bias) -> None:
    if w.device != x.device or (bias is not None and bias.device != x.device):
        raise ValueError(f"input, weight and bias must be on one device, got {x.device}, "
                         f"{w.device} and {bias.device if bias is not None else x.device}")


def _gluon_linear(x, w, bias, backend: str) -> torch.Tensor:
    """backend="ws" (the warp-specialized GEMM; a plain MXTensor or a HopperWeight, whose decode
    is cheaper) or "rs" (the register-operand GEMM; a HopperWeight, a plain MXTensor is
    prepacked for the call), or a ValueError saying why it cannot run here (a forced backend
    never falls back)."""
    name = {"ws": "the warp-specialized GEMM", "rs": "the register-operand GEMM"}[backend]
    if not _have_triton():
        raise RuntimeError(f"backend={backend!r} needs the 'triton' package (pip install triton)")
    ws = _kernel_module("ws_gemm")
    # an empty batch is fine (both return an empty result, as F.linear does)
    why = ws.unsupported_reason(ws._capability(x.device), ws.triton.__version__, x.dtype,
                                w.block_size, w.shape[1], max(1, _rows(x)))
    if why:
        raise ValueError(f"backend={backend!r} ({name}) cannot run this call: {why}; "
                         f"use backend='triton' or 'auto'")
    _check_one_device(x, w, bias)
    if bias is not None and bias.dtype != torch.bfloat16:
        raise ValueError(f"backend={backend!r} takes a bfloat16 bias, got {bias.dtype}")
    if backend == "ws":
        return ws.ws_linear(x, w, bias)
    if not isinstance(w, HopperWeight):
        from .layouts import prepack
        w = prepack(w)
    return _kernel_module("rs_gemm").rs_linear(x, w, bias)


_WS_WARNED: list = []  # [True] once the "Gluon GEMMs not used here" warning was shown


def _auto_gluon(x, w, bias) -> str | None:
    """For backend="auto" on CUDA: the Gluon GEMM GLUON_AUTO names for this many rows ("ws" or
    "rs"), or None for the Triton v1 kernels. "rs" reads a HopperWeight only (a plain MXTensor
    stays on v1 rather than be prepacked every call). On a GPU or triton version the kernels
    were not written for, it warns once and keeps v1 (never the torch reference)."""
    if not GLUON_AUTO:
        return None
    ws = _kernel_module("ws_gemm")
    why = ws.platform_reason(x.device)
    if why:
        if not _WS_WARNED:
            _WS_WARNED.append(True)
            warnings.warn(f"mxfp4.linear: the Gluon GEMMs are not used because {why}; "
                          f"running the Triton v1 kernels (this warning is shown once)",
                          stacklevel=3)
        return None
    if bias is not None and bias.dtype != torch.bfloat16:
        return None
    m = _rows(x)
    pick = next((b for lo, hi, b in GLUON_AUTO if lo <= m <= hi), None)
    if pick == "rs":
        return "rs" if isinstance(w, HopperWeight) and ws.use_ws_gemm(x, w) else None
    return pick if pick == "ws" and ws.use_ws_gemm(x, w) else None


def linear(x: torch.Tensor, w: MXTensor | HopperWeight, bias: torch.Tensor | None = None, *,
           backend: str = "auto") -> torch.Tensor:
    """x @ W.T + bias for an MXFP4 weight W [N, K] quantized along K, like F.linear.

    Accumulates in float32 and returns x's dtype. The reference dequantizes W and
    multiplies in float32; the kernel (CUDA) decodes W in registers and multiplies on the
    bf16 tensor cores (fp16/fp32 inputs as two bf16 terms). `w` may also be a
    `mxfp4.layouts.HopperWeight` (prepacked once with `mxfp4.layouts.prepack`), the layout
    the kernel reads fastest. backend="ws" forces the warp-specialized GEMM and "rs" the
    register-operand one (blocks of 32 along K, bf16 x and bias, an sm_90 GPU with triton
    3.6); each raises a ValueError saying why when it cannot run.
    """
    _check_backend(backend, LINEAR_BACKENDS)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"mxfp4.linear expects a torch.Tensor input, got {type(x).__name__}")
    if x.dtype not in codec.FLOAT_DTYPES:
        raise TypeError(f"mxfp4.linear expects bfloat16, float16 or float32 input, got {x.dtype}")
    if not isinstance(w, HopperWeight):
        _check_mx_along_k(w, "weight")
    if x.dim() == 0 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"input's last dimension {tuple(x.shape)[-1:]} does not match the weight's "
                         f"K = {w.shape[1]} (weight shape {tuple(w.shape)})")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (w.shape[0],)):
        raise ValueError(f"bias must be a tensor of shape ({w.shape[0]},), got "
                         f"{getattr(bias, 'shape', type(bias).__name__)}")
    if backend in ("ws", "rs"):
        return _gluon_linear(x, w, bias, backend)
    if _use_triton(backend, x.device):
        _check_one_device(x, w, bias)
        pick = _auto_gluon(x, w, bias) if backend == "auto" else None
        if pick == "ws":
            return _kernel_module("ws_gemm").ws_linear(x, w, bias)
        if pick == "rs":
            return _kernel_module("rs_gemm").rs_linear(x, w, bias)
        return _kernel_module("linear").linear(x, w, bias)
    if isinstance(w, HopperWeight):
        w = w.to_mx()
    y = x.float() @ w.dequantize(torch.float32, backend="reference").to(x.device).T
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def matmul(a: MXTensor, b: MXTensor, *, backend: str = "auto") -> torch.Tensor:
    """A @ B.T in float32 for MXTensors a [M, K] and b [N, K], both quantized along K.

    Per the OCP dot product, each block pair contributes scale_a * scale_b * sum(a_i * b_i);
    every product of E2M1 values and power-of-two scales is exact in float32, so the reference
    computes it as a float32 product of the dequantized operands.
    """
    _check_backend(backend)
    _check_mx_along_k(a, "a")
    _check_mx_along_k(b, "b")
    if a.shape[1] != b.shape[1] or a.block_size != b.block_size:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must share K and block size "
                         f"({a.block_size} vs {b.block_size})")
    if _use_triton(backend, a.device):
        if a.device != b.device:
            raise ValueError(f"a and b must be on one device, got {a.device} and {b.device}")
        from .kernels import mx_matmul as km

        return km.matmul(a, b)
    return a.dequantize(backend="reference") @ b.dequantize(backend="reference").T
