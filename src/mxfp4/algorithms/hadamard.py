"""Block Hadamard rotation: spread outliers across a block before MXFP4 quantization.

A weight W [N, K] is rotated along its input dimension K in independent blocks of
`size` (the MX block size): W' = W · diag(H, H, ...), with H the orthonormal Sylvester
Hadamard matrix. H is symmetric and H·H = I, so rotating the activations the same way,
x' = x · diag(H, ...), keeps x'·W'ᵀ = x·Wᵀ exactly before rounding. One outlier in a
block is spread over all 32 elements of it, which lowers the block's max |w| relative to
the rest and so the rounding error of the other 31 elements.
"""

from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=16)
def _hadamard_cpu(size: int) -> torch.Tensor:
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < size:  # Sylvester: H_2n = [[H, H], [H, -H]]
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return (h / math.sqrt(size)).to(torch.float32)


def hadamard_matrix(size: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal [size, size] Sylvester Hadamard matrix (symmetric, its own inverse)."""
    if not isinstance(size, int) or size < 1 or size & (size - 1):
        raise ValueError(f"Hadamard size must be a power of two, got {size!r}")
    return _hadamard_cpu(size).to(device=device, dtype=dtype)


def rotate(x: torch.Tensor, size: int = 32) -> torch.Tensor:
    """x · diag(H, H, ...) along the last dimension, in blocks of `size`, in x's dtype.

    Computed in float32 for half-precision inputs. Applying it twice gives x back
    (up to float rounding).
    """
    k = x.shape[-1]
    if k % size:
        raise ValueError(f"the Hadamard rotation needs the last dimension ({k}) to be a multiple "
                         f"of its size {size}")
    h = hadamard_matrix(size, x.device)
    blocks = x.reshape(*x.shape[:-1], k // size, size).to(torch.float32)
    return (blocks @ h).reshape(x.shape).to(x.dtype)
