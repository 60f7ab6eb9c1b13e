"""GPTQ-style error feedback onto the MXFP4 grid.

Columns of W [N, K] are quantized left to right. The rounding error of column j, divided by
the pivot of the Cholesky factor U of H⁻¹ (H = XᵀX of the layer's calibration inputs), is
pushed onto the columns not yet quantized through U's row j, which minimises the growth of
‖XWᵀ − XŴᵀ‖² (Frantar et al., 2022). Each block of `block_size` columns gets its E8M0 scales
from the block's current (already corrected) weights before any of its columns is rounded;
the block's columns are then rounded one at a time to that fixed scale.
"""

from __future__ import annotations

import torch

from ..codec import MAX_SCALE_BYTE, round_nearest, scale_bytes
from ..format import BLOCK_SIZE, E8M0_BIAS, e2m1_table, e8m0_to_float32, pow2_float32
from ..tensor import MXTensor
from .hadamard import rotate


class HessianAccumulator:
    """Running H = 2/n · Σ xᵀx over the rows x of a layer's inputs (optionally rotated)."""

    def __init__(self, in_features: int, hadamard_size: int | None = None, device=None):
        # on the layer's device: GPTQ then runs where the weight is, with no copy per batch
        self.hessian = torch.zeros(in_features, in_features, dtype=torch.float64, device=device)
        self.count = 0
        self.hadamard_size = hadamard_size

    def add(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add the rows of x [..., in]; with `mask` (an attention mask [batch, seq] for x
        [batch, seq, in]) only the rows where it is nonzero: padding says nothing about the data."""
        x = x.detach()
        if mask is not None:
            if tuple(mask.shape) != tuple(x.shape[:-1]):
                raise ValueError(f"an attention mask of shape {tuple(mask.shape)} cannot select "
                                 f"the rows of a layer input of shape {tuple(x.shape)}; "
                                 "calibrate with unpadded batches")
            x = x[mask.to(x.device) != 0]
        x = x.reshape(-1, x.shape[-1]).float()
        if self.hadamard_size:
            x = rotate(x, self.hadamard_size)
        x = x.to(self.hessian.device)
        self.hessian += 2.0 * (x.T @ x).to(torch.float64)  # float32 product, float64 running sum
        self.count += x.shape[0]

    def hook(self, module, args) -> None:
        """A forward pre-hook: `module.register_forward_pre_hook(acc.hook)`."""
        self.add(args[0])

    def result(self) -> torch.Tensor:
        if not self.count:
            raise RuntimeError("no calibration inputs reached this layer")
        return self.hessian / self.count


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, *, block_size: int = BLOCK_SIZE,
                  scale_rule: str = "floor", damp: float = 0.01) -> MXTensor:
    """MXFP4 weight [N, K] (blocks along K) chosen by GPTQ error feedback with Hessian [K, K].

    `damp` adds damp · mean(diag H) to the diagonal. With H = I and damp = 0 there is no
    feedback and the result equals round-to-nearest with the same scale rule, bit for bit.
    """
    if weight.dim() != 2:
        raise ValueError(f"gptq_quantize needs a 2-D weight, got shape {tuple(weight.shape)}")
    n, k = weight.shape
    if k % block_size:
        raise ValueError(f"K = {k} is not a multiple of the block size {block_size}")
    if hessian.shape != (k, k):
        raise ValueError(f"hessian must be [{k}, {k}], got {tuple(hessian.shape)}")
    if not torch.isfinite(weight).all() or not torch.isfinite(hessian).all():
        raise ValueError("gptq_quantize: the weight or the Hessian contains NaN or Inf")
    if scale_rule not in ("floor", "ceil", "even", "mse"):
        raise ValueError(f"unknown scale_rule {scale_rule!r}")
    w = weight.detach().to(torch.float32).clone()
    u = _inverse_hessian_factor(hessian.detach().to(torch.float64).clone(), w, damp).to(torch.float32)
    table = e2m1_table(w.device).abs()[:8]
    codes = torch.empty(n, k, dtype=torch.uint8, device=w.device)
    scales = torch.empty(n, k // block_size, dtype=torch.uint8, device=w.device)
    for b0 in range(0, k, block_size):
        b1 = b0 + block_size
        byte = scale_bytes(w[:, None, b0:b1], scale_rule)[:, 0].clamp(max=MAX_SCALE_BYTE)
        scales[:, b0 // block_size] = byte.to(torch.uint8)
        inv_scale, scale = pow2_float32(E8M0_BIAS - byte), e8m0_to_float32(byte)
        errors = torch.empty(n, block_size, dtype=torch.float32, device=w.device)
        for j in range(b0, b1):
            col = w[:, j]
            mag = round_nearest(col.abs() * inv_scale)
            q = torch.where(torch.signbit(col), -table[mag], table[mag]) * scale
            codes[:, j] = (mag | (torch.signbit(col).to(torch.int32) << 3)).to(torch.uint8)
            err = (col - q) / u[j, j]
            w[:, j + 1:b1] -= err[:, None] * u[j, j + 1:b1][None, :]
            errors[:, j - b0] = err
        w[:, b1:] -= errors @ u[b0:b1, b1:]
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return MXTensor(packed, scales, (n, k), axis=1, block_size=block_size, scale_rule=scale_rule)


def _inverse_hessian_factor(h: torch.Tensor, w: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + λI)⁻¹; inputs that were always zero get their weights zeroed."""
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    diag = torch.arange(h.shape[0], device=h.device)
    h[diag, diag] += damp * torch.diagonal(h).mean()
    for extra in (0.0, 1e-3, 1e-2, 1e-1):  # more damping if H is numerically not positive definite
        try:
            hd = h + extra * torch.diagonal(h).mean() * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
            lower = torch.linalg.cholesky(hd)
            return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
        except torch.linalg.LinAlgError:
            continue
    raise ValueError("the calibration Hessian is not positive definite even with 10% damping")
