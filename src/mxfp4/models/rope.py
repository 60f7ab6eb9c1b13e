"""Rotary position embedding with YaRN scaling, as GPT-OSS uses it.

YaRN (https://arxiv.org/abs/2309.00071) keeps the fast-rotating dimensions as they are
(extrapolation), divides the slow ones by `factor` (interpolation) and ramps linearly between,
over the dimensions that make between `ntk_beta` and `ntk_alpha` turns within the initial
context. cos and sin are multiplied by the concentration 0.1 * ln(factor) + 1.
The rotation pairs dimension j with j + head_dim / 2 (half split, not interleaved).
"""

from __future__ import annotations

import math

import torch


def yarn_inv_freq(head_dim: int, theta: float, factor: float, ntk_alpha: float, ntk_beta: float,
                  initial_context_length: int, device=None) -> tuple[torch.Tensor, float]:
    """(inverse frequencies [head_dim / 2] float32, concentration)."""
    freq = theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    if factor <= 1.0:
        return 1.0 / freq, 1.0
    d_half = head_dim / 2

    def dim_with_turns(turns: float) -> float:  # the dimension that turns `turns` times
        return d_half * math.log(initial_context_length / (turns * 2 * math.pi)) / math.log(theta)

    low, high = dim_with_turns(ntk_beta), dim_with_turns(ntk_alpha)
    ramp = (torch.arange(d_half, dtype=torch.float32, device=device) - low) / max(high - low, 1e-3)
    keep = 1 - ramp.clamp(0, 1)  # 1: extrapolate (fast dims), 0: interpolate (slow dims)
    inv_freq = keep / freq + (1 - keep) / (factor * freq)
    return inv_freq, 0.1 * math.log(factor) + 1.0


class Rope:
    """cos / sin tables for given positions; no state, so it works on any device (and meta)."""

    def __init__(self, head_dim: int, theta: float, factor: float, ntk_alpha: float,
                 ntk_beta: float, initial_context_length: int):
        self.args = (head_dim, theta, factor, ntk_alpha, ntk_beta, initial_context_length)
        self._tables = {}

    def tables(self, device) -> tuple[torch.Tensor, float]:
        """(inverse frequencies on `device`, concentration), computed once per device."""
        key = torch.device(device)
        if key not in self._tables:
            self._tables[key] = yarn_inv_freq(*self.args, device=key)
        return self._tables[key]

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [...] int -> cos, sin [..., head_dim / 2] float32 (negative positions: 0)."""
        inv_freq, concentration = yarn_inv_freq(*self.args, device=positions.device)
        angles = positions.clamp(min=0).float()[..., None] * inv_freq
        return angles.cos() * concentration, angles.sin() * concentration


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, heads..., D] by cos / sin [B, T, D/2], in float32; returns x's dtype."""
    shape = cos.shape[:2] + (1,) * (x.dim() - 3) + cos.shape[2:]
    cos, sin = cos.view(shape), sin.view(shape)
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)
