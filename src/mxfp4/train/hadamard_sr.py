"""Quantize-dequantize of one GEMM operand: optional random-sign Hadamard, then MXFP4.

`quantize_dequantize(x, axis, spec, ...)` is what the recipe layer calls for each operand. On
CUDA it runs the fused Triton kernel `mxfp4.kernels.train_quantize`; elsewhere
`quantize_dequantize_reference`, its twin, which does the same math in plain torch:

    y = x · D · H   along `axis`, in blocks of spec.hadamard (D: diag of ±1 signs, H: the
                    unnormalized ±1 Sylvester Hadamard matrix; the exact sum, rounded once
                    to float32)
    out = dequantize(quantize(y))   MXFP4 blocks along `axis`, nearest or stochastic rounding

H is left unnormalized (H·Hᵀ = size·I) so that the rotated values are exact sums of the inputs;
the GEMM divides its result by `size`, a power of two, which is exact. Both operands of a GEMM
must get the same signs.
"""

from __future__ import annotations

import functools

import torch

from .. import codec
from ..algorithms.hadamard import hadamard_matrix
from .recipes import GemmSpec

BACKENDS = ("auto", "triton", "reference")
_MASK64 = (1 << 64) - 1


def derive_seed(*parts: int) -> int:
    """A 31-bit seed mixed from integers (splitmix64 steps): distinct streams per part."""
    z = 0x9E3779B97F4A7C15
    for p in parts:
        z = (z + (int(p) & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        z ^= z >> 31
    return z & 0x7FFFFFFF


def _mul32(a: torch.Tensor, c: int) -> torch.Tensor:
    """(a * c) mod 2^32 for 0 <= a < 2^32 in int64, without overflow (16-bit halves)."""
    return ((a & 0xFFFF) * c + ((((a >> 16) * c) & 0xFFFF) << 16)) & 0xFFFFFFFF


def random_signs(n: int, seed: int, device=None) -> torch.Tensor:
    """n random ±1 (float32): sign i is the top bit of a 32-bit hash of (i, seed) (MurmurHash3's
    finalizer). The same on every device, and the fused kernel draws the very same signs from
    the seed in registers (kernels/train_quantize.py `_hash_signs`), so a training step makes
    no sign tensor at all."""
    h = _mul32(torch.arange(1, n + 1, device=device, dtype=torch.int64), 0x9E3779B1)
    h ^= int(seed) & 0x7FFFFFFF
    h ^= h >> 16
    h = _mul32(h, 0x85EBCA6B)
    h ^= h >> 13
    h = _mul32(h, 0xC2B2AE35)
    h ^= h >> 16
    return (1 - 2 * (h >> 31)).to(torch.float32)


@functools.lru_cache(maxsize=8)
def _pm1_cpu(size: int) -> torch.Tensor:
    return torch.sign(hadamard_matrix(size, dtype=torch.float64))  # exactly ±1


def hadamard_pm1(size: int, device=None, dtype=torch.float64) -> torch.Tensor:
    """The unnormalized [size, size] Sylvester Hadamard matrix (entries ±1, H·Hᵀ = size·I)."""
    return _pm1_cpu(size).to(device=device, dtype=dtype)


def rotate_pm1(x: torch.Tensor, axis: int, size: int, signs: torch.Tensor | None) -> torch.Tensor:
    """x · D · H along `axis` in blocks of `size`, in float64 (exact for float32 inputs of
    moderate range). signs: the diagonal of D (length x.shape[axis]), or None for D = I."""
    xt = x.movedim(axis, -1).to(torch.float64)
    n = xt.shape[-1]
    if n % size:
        raise ValueError(f"the Hadamard transform needs the length along axis {axis} ({n}) to be "
                         f"a multiple of its size {size}")
    if signs is not None:
        xt = xt * signs.to(device=xt.device, dtype=torch.float64)
    y = xt.reshape(*xt.shape[:-1], n // size, size) @ hadamard_pm1(size, xt.device)
    return y.reshape(xt.shape).movedim(-1, axis)


def quantize_dequantize_reference(x: torch.Tensor, axis: int, spec: GemmSpec, seed: int | None,
                                  signs: torch.Tensor | None = None,
                                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """The reference twin of kernels.train_quantize.quantize_dequantize (see the module doc)."""
    y = x
    if spec.hadamard:
        y = rotate_pm1(x, axis, spec.hadamard, signs).to(torch.float32)
    codes, scales = codec.quantize_blocks(y, axis, spec.block_size, spec.scale_rule,
                                          spec.rounding, seed)
    return codec.dequantize_blocks(codes, scales, y.shape, axis, spec.block_size, dtype or x.dtype)


def check_operand(x: torch.Tensor, axis: int, spec: GemmSpec, signs: torch.Tensor | None) -> int:
    """Validate one operand; return the axis as 0 or 1."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"quantize_dequantize expects a 2-D tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.dtype not in codec.FLOAT_DTYPES:
        raise TypeError(f"quantize_dequantize expects float32, bfloat16 or float16, got {x.dtype}")
    if axis not in (0, 1, -1, -2):
        raise IndexError(f"axis {axis!r} is out of range for a 2-D tensor")
    axis %= 2
    if not spec.quantized:
        raise ValueError("quantize_dequantize needs a GemmSpec with format='mxfp4'")
    n = x.shape[axis]
    if n % spec.multiple():
        raise ValueError(f"the reduction axis has length {n}, not a multiple of the block size "
                         f"{spec.block_size}" + (f" and Hadamard size {spec.hadamard}"
                                                 if spec.hadamard else ""))
    if spec.hadamard and signs is not None and tuple(signs.shape) != (n,):
        raise ValueError(f"signs must have shape ({n},), got {tuple(signs.shape)}")
    return axis


def quantize_dequantize(x: torch.Tensor, axis: int, spec: GemmSpec, *, seed: int | None = None,
                        signs: torch.Tensor | None = None, sign_seed: int | None = None,
                        dtype: torch.dtype | None = None, backend: str = "auto") -> torch.Tensor:
    """x rotated (if spec.hadamard) and MXFP4-quantized along `axis`, back in `dtype`.

    The result has x's shape (along `axis` the rotated coordinates when spec.hadamard: a GEMM
    of two such operands equals size × the plain one). The Hadamard's signs: a tensor `signs`,
    or `sign_seed` for random_signs(n, sign_seed) (the kernel draws those itself), or neither
    (all +1). backend "auto" runs the Triton kernel on CUDA and the reference elsewhere;
    "triton" forces the kernel (CPU tensors need TRITON_INTERPRET=1), "reference" the
    plain-torch twin.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if signs is not None and sign_seed is not None:
        raise ValueError("give the Hadamard signs as a tensor or as a sign_seed, not both")
    axis = check_operand(x, axis, spec, signs)
    dtype = dtype or x.dtype
    if dtype not in codec.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
    if backend == "reference" or (backend == "auto" and x.device.type != "cuda"):
        if spec.hadamard and sign_seed is not None:
            signs = random_signs(x.shape[axis], sign_seed, x.device)
        return quantize_dequantize_reference(x, axis, spec, seed, signs if spec.hadamard else None,
                                             dtype)
    from ..kernels import train_quantize as kt

    return kt.quantize_dequantize(x, axis, block_size=spec.block_size,
                                  scale_rule=spec.scale_rule,
                                  stochastic=spec.rounding == "stochastic", seed=seed,
                                  hadamard=spec.hadamard, signs=signs, sign_seed=sign_seed,
                                  dtype=dtype)


def quantize_dequantize_both(x: torch.Tensor, spec1: GemmSpec, spec0: GemmSpec, *,
                             seeds: tuple = (None, None), sign_seeds: tuple = (None, None),
                             dtype: torch.dtype | None = None,
                             backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(quantize_dequantize(x, 1, spec1, ...), quantize_dequantize(x, 0, spec0, ...)) with
    seeds = (seed1, seed0) and sign_seeds likewise: the same two results, bit for bit, from
    one read of x on CUDA (kernels.train_quantize.quantize_dequantize_both)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_operand(x, 1, spec1, None)
    check_operand(x, 0, spec0, None)
    dtype = dtype or x.dtype
    if backend == "reference" or (backend == "auto" and x.device.type != "cuda"):
        return tuple(quantize_dequantize(x, axis, spec, seed=seed, sign_seed=signs, dtype=dtype,
                                         backend="reference")
                     for axis, spec, seed, signs in zip((1, 0), (spec1, spec0), seeds, sign_seeds))
    if dtype not in codec.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
    from ..kernels import train_quantize as kt

    def along(spec, seed, sign_seed):
        return dict(block_size=spec.block_size, scale_rule=spec.scale_rule,
                    stochastic=spec.rounding == "stochastic", seed=seed, hadamard=spec.hadamard,
                    sign_seed=sign_seed if spec.hadamard else None)
    return kt.quantize_dequantize_both(x, along(spec1, seeds[0], sign_seeds[0]),
                                       along(spec0, seeds[1], sign_seeds[1]), dtype)
