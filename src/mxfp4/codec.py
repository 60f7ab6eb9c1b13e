"""Reference MXFP4 quantize / dequantize in plain torch, on any device.

This is the oracle every kernel is compared with. Blocks run along one axis;
inside the codec that axis is moved last and zero-padded to whole blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .format import (
    E2M1_EMAX,
    E2M1_MAGNITUDES,
    E2M1_MAX,
    E8M0_BIAS,
    E8M0_NAN,
    RNE_BOUNDARIES,
    e2m1_table,
    e8m0_to_float32,
    pow2_float32,
)

SCALE_RULES = ("floor", "ceil", "even", "mse")
ROUNDINGS = ("nearest", "stochastic")
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_SCALE_BYTE = 254  # 2^127; 0xFF is reserved for NaN

_MANTISSA_BITS = 0x7FFFFF
_MANTISSA_1_5 = 0x400000  # mantissa bits of 1.5
_MANTISSA_1_75 = 0x600000  # mantissa bits of 1.75: rounds up to 2 at one mantissa bit


def check_args(x, axis: int, block_size: int, scale_rule: str, rounding: str) -> int:
    """Validate quantize arguments; return the axis as a non-negative index."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"mxfp4.quantize expects a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"mxfp4.quantize expects float32, bfloat16 or float16, got {x.dtype}")
    if x.dim() == 0:
        raise ValueError("mxfp4.quantize needs a tensor with at least one dimension")
    if (not isinstance(block_size, int) or isinstance(block_size, bool)
            or block_size < 2 or block_size > 1024 or block_size & (block_size - 1)):
        raise ValueError(f"block_size must be a power of two from 2 to 1024, got {block_size!r}")
    if not isinstance(axis, int) or isinstance(axis, bool) or not -x.dim() <= axis < x.dim():
        raise IndexError(f"axis {axis!r} is out of range for a tensor of {x.dim()} dimensions")
    if scale_rule not in SCALE_RULES:
        raise ValueError(f"scale_rule must be one of {SCALE_RULES}, got {scale_rule!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    return axis % x.dim()


def to_blocks(x: torch.Tensor, axis: int, block_size: int) -> torch.Tensor:
    """float32 view [..., n_blocks, block_size] with `axis` moved last and zero-padded."""
    xt = x.movedim(axis, -1).to(torch.float32).contiguous()
    k = xt.shape[-1]
    pad = -k % block_size
    if pad:
        xt = F.pad(xt, (0, pad))
    return xt.reshape(*xt.shape[:-1], (k + pad) // block_size, block_size)


def scale_bytes(blocks: torch.Tensor, scale_rule: str) -> torch.Tensor:
    """E8M0 scale byte per block (int32 [..., n_blocks]) from the block's max |x|."""
    return choose_scales(blocks, scale_rule)[0]


def choose_scales(blocks: torch.Tensor, scale_rule: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scale bytes per block and, for "mse", the nearest-rounded magnitude indices at them.

    Works on the float32 bits of amax: its biased exponent is floor(log2(amax)) + 127
    for normal floats and 0 for subnormals, whose scale clamps to 2^-127 anyway.
    """
    amax = blocks.abs().amax(dim=-1)
    bits = amax.view(torch.int32)
    biased_exp, mantissa = bits >> 23, bits & _MANTISSA_BITS
    byte = biased_exp - E2M1_EMAX  # floor rule: e = floor(log2(amax)) - 2
    if scale_rule == "ceil":  # amax > 1.5 * 2^E needs one more exponent to fit under 6 * 2^e
        byte = byte + (mantissa > _MANTISSA_1_5).to(torch.int32)
    elif scale_rule == "even":  # amax rounded half-to-even to one mantissa bit, then floor
        byte = byte + (mantissa >= _MANTISSA_1_75).to(torch.int32)
    byte = byte.clamp(0, MAX_SCALE_BYTE)
    mags = None
    if scale_rule == "mse":
        byte, mags = _mse_choice(blocks, byte)
    return torch.where(torch.isfinite(amax), byte, torch.full_like(byte, E8M0_NAN)), mags


def _mse_choice(blocks: torch.Tensor, floor_byte: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per block, the floor exponent or the next one up, whichever has the smaller squared error.

    With y = |x| / 2^floor (so y / 2 at the next exponent) and q_f, q_u the nearest magnitudes
    of y and y / 2, floor's error minus up's (in floor's units) is
    sum (y - q_f)^2 - 4 (y/2 - q_u)^2 = sum (2 q_u - q_f)(2 y - q_f - 2 q_u).
    Each term is exact in float64 (a few-bit factor times a float32-precise one), nonzero only
    where y >= 1/4, so the sum is exact too: the choice does not depend on summation order
    (kernels and reference agree bit for bit) and a true tie, such as small elements that round
    to zero at both exponents, keeps the floor. NaN/Inf blocks compare False (keep the floor) and
    get the NaN byte afterwards. Returns the chosen bytes and the magnitude indices at them.
    """
    up_byte = (floor_byte + 1).clamp(max=MAX_SCALE_BYTE)
    mags = blocks.abs()
    table = _magnitude_table(blocks.device)
    y = mags * pow2_float32(E8M0_BIAS - floor_byte)[..., None]
    floor_idx = round_nearest(y)
    up_idx = round_nearest(mags * pow2_float32(E8M0_BIAS - up_byte)[..., None])
    q_f, q_u = table[floor_idx].double(), table[up_idx].double()
    gain = ((2 * q_u - q_f) * (2 * y.double() - q_f - 2 * q_u)).sum(dim=-1)
    up = (gain > 0) & (up_byte > floor_byte)
    return torch.where(up, up_byte, floor_byte), torch.where(up[..., None], up_idx, floor_idx)


def _magnitude_table(device) -> torch.Tensor:
    return torch.tensor(E2M1_MAGNITUDES, dtype=torch.float32, device=device)


def round_nearest(y: torch.Tensor) -> torch.Tensor:
    """E2M1 magnitude index (0..7) of y >= 0: round to nearest, ties to even, saturate at 6."""
    bounds = torch.tensor(RNE_BOUNDARIES, dtype=torch.float32, device=y.device)
    return torch.bucketize(y, bounds, out_int32=True)


def round_stochastic(y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """E2M1 magnitude index of y >= 0, rounding up with probability (y - lo) / (hi - lo).

    The grid step is 0.5 below 2, 1 below 4 and 2 above; above 6 the result saturates.
    """
    step = torch.where(y < 2, 0.5, torch.where(y < 4, 1.0, 2.0))
    lo = torch.floor(y / step) * step
    u = torch.rand(y.shape, generator=generator, device=y.device, dtype=torch.float32)
    q = torch.clamp_max(lo + step * (u < (y - lo) / step), E2M1_MAX)
    return round_nearest(q)


def quantize_blocks(x: torch.Tensor, axis: int, block_size: int, scale_rule: str,
                    rounding: str, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference quantizer: packed codes and E8M0 scale bytes, both uint8.

    Along `axis`, codes has ceil(K / block_size) * block_size / 2 bytes (element 2i in the
    low nibble, 2i+1 in the high one) and scales has ceil(K / block_size) bytes.
    """
    blocks = to_blocks(x, axis, block_size)
    byte, mags = choose_scales(blocks, scale_rule)
    nan_block = byte == E8M0_NAN
    if mags is None or rounding != "nearest":
        y = blocks.abs().mul_(pow2_float32(E8M0_BIAS - byte.clamp(max=MAX_SCALE_BYTE))[..., None])
        if bool(nan_block.any()):
            y = y.masked_fill(nan_block[..., None], 0.0)
        if rounding == "nearest":
            mags = round_nearest(y)
        else:
            gen = None if seed is None else torch.Generator(device=x.device).manual_seed(seed)
            mags = round_stochastic(y, gen)
    sign = (blocks.view(torch.int32) >> 28).bitwise_and_(8)  # float sign bit -> code bit 3
    codes = mags.bitwise_or_(sign).to(torch.uint8)
    if bool(nan_block.any()):
        codes = codes.masked_fill(nan_block[..., None], 0)
    codes = codes.flatten(-2)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return (packed.movedim(-1, axis).contiguous(),
            byte.to(torch.uint8).movedim(-1, axis).contiguous())


def _pair_table(device) -> torch.Tensor:
    """[256, 2] float32: the two element values of every packed byte (low nibble first)."""
    table = e2m1_table(device)
    byte = torch.arange(256, device=device)
    return torch.stack((table[byte & 0xF], table[byte >> 4]), dim=-1)


def dequantize_blocks(codes: torch.Tensor, scales: torch.Tensor, shape: torch.Size, axis: int,
                      block_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Reference dequantizer: the logical tensor `shape` from packed codes and scale bytes."""
    c = codes.movedim(axis, -1)
    s = scales.movedim(axis, -1)
    n_blocks = s.shape[-1]
    vals = _pair_table(codes.device)[c.long()]  # [..., K/2, 2]
    vals = vals.reshape(*s.shape, block_size) * e8m0_to_float32(s)[..., None]
    vals = vals.reshape(*s.shape[:-1], n_blocks * block_size)[..., : shape[axis]]
    return vals.movedim(-1, axis).to(dtype)
