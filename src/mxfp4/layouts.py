"""Storage layouts for MXFP4 weights: lossless, reversible conversions of an MXTensor.

`HopperWeight` is the layout `mxfp4.linear`'s Triton kernel reads fastest. The plain MXTensor
packs elements 2i and 2i+1 into one byte; here, inside each group of 64 elements along K,
byte j holds element j (low nibble) and element 32 + j (high nibble). So the low nibbles of
a group are one whole scale block and the high nibbles the next one: the kernel decodes both
nibbles of a byte into two contiguous runs of K, with no interleaving shuffle and one scale
per run. The high nibble is stored rotated, (magnitude << 1) | sign, which lets the kernel
decode two bytes with a handful of bit operations (see kernels/unpack.py). Scales are stored
transposed, [K/32, N], so that a tile's scales are contiguous along N and load in wide,
pipelined copies. K is padded with zero codes to a multiple of 64 (scale byte 127 for a padded
block) and N with zero rows to a multiple of 128, so every kernel tile is in bounds;
`to_mx` drops the padding again.

Convert once (`HopperWeight.from_mx(w)` or `mxfp4.layouts.prepack(w)`), not per call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .format import BLOCK_SIZE, E8M0_BIAS
from .tensor import MXTensor

GROUP = 2 * BLOCK_SIZE  # elements per group of two scale blocks
ROW_PAD = 128  # N is padded to a multiple of the largest kernel tile


def _rotate(codes: torch.Tensor) -> torch.Tensor:
    """E2M1 code -> stored form (magnitude << 1) | sign (and _unrotate back)."""
    return ((codes & 7) << 1) | (codes >> 3)


def _unrotate(stored: torch.Tensor) -> torch.Tensor:
    return (stored >> 1) | ((stored & 1) << 3)


@dataclass(eq=False)
class HopperWeight:
    """An MXFP4 weight [N, K] (quantized along K, blocks of 32) in the kernel layout.

    codes:  uint8 [Np, Kp/2], Kp = K rounded up to 64, Np = N rounded up to 128; byte j of
            group g holds element 64g + j (low nibble) and element 64g + 32 + j (high nibble,
            rotated to (magnitude << 1) | sign).
    scales: uint8 [Kp/32, Np], the E8M0 bytes of the MXTensor, transposed.
    max_scale: the largest scale byte (255 if any block is NaN). When it is <= 128 (|W| <= 12,
            every real weight) the kernel applies decode and scale in one bf16 multiply.
    """

    codes: torch.Tensor
    scales: torch.Tensor
    shape: torch.Size
    scale_rule: str = "floor"
    max_scale: int = 255
    block_size: int = BLOCK_SIZE

    def __post_init__(self):
        self.shape = torch.Size(self.shape)
        if len(self.shape) != 2:
            raise ValueError(f"HopperWeight holds a 2-D weight [N, K], got shape {tuple(self.shape)}")
        n, k = self.shape
        kp, np_ = _padded(n, k)
        if self.codes.dtype != torch.uint8 or self.scales.dtype != torch.uint8:
            raise TypeError("HopperWeight codes and scales must be uint8")
        want_c, want_s = (np_, kp // 2), (kp // BLOCK_SIZE, np_)
        if tuple(self.codes.shape) != want_c or tuple(self.scales.shape) != want_s:
            raise ValueError(f"HopperWeight of shape {(n, k)} needs codes {want_c} and scales "
                             f"{want_s}, got {tuple(self.codes.shape)} and {tuple(self.scales.shape)}")
        if not (self.codes.is_contiguous() and self.scales.is_contiguous()):
            raise ValueError("HopperWeight codes and scales must be contiguous")
        if not isinstance(self.max_scale, int) or not 0 <= self.max_scale <= 255:
            raise ValueError(f"max_scale must be a scale byte 0..255, got {self.max_scale!r}")
        if self.block_size != BLOCK_SIZE:
            raise ValueError(f"HopperWeight needs blocks of {BLOCK_SIZE}, got {self.block_size}")

    @property
    def device(self) -> torch.device:
        return self.codes.device

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.scales.nbytes

    def to(self, device) -> "HopperWeight":
        return HopperWeight(self.codes.to(device), self.scales.to(device), self.shape,
                            self.scale_rule, self.max_scale)

    @classmethod
    def from_mx(cls, w: MXTensor) -> "HopperWeight":
        """Repack a 2-D MXTensor quantized along its last axis (blocks of 32)."""
        if not isinstance(w, MXTensor):
            raise TypeError(f"HopperWeight.from_mx expects an MXTensor, got {type(w).__name__}")
        if len(w.shape) != 2 or w.axis != 1 or w.block_size != BLOCK_SIZE:
            raise ValueError("HopperWeight needs a 2-D MXTensor quantized along its last axis in "
                             f"blocks of {BLOCK_SIZE}, got shape {tuple(w.shape)}, axis={w.axis}, "
                             f"block_size={w.block_size}")
        codes, scales = pack(w.codes, w.scales, *w.shape)
        max_scale = int(w.scales.max()) if w.scales.numel() else 0  # one sync, at pack time
        return cls(codes, scales, w.shape, w.scale_rule, max_scale)

    def to_mx(self) -> MXTensor:
        """The MXTensor this weight came from (exactly)."""
        codes, scales = unpack(self.codes, self.scales, *self.shape)
        return MXTensor(codes, scales, self.shape, axis=1, block_size=BLOCK_SIZE,
                        scale_rule=self.scale_rule)


def _padded(n: int, k: int, row_pad: int = ROW_PAD) -> tuple[int, int]:
    return -(-k // GROUP) * GROUP, -(-n // row_pad) * row_pad


def pack(codes: torch.Tensor, scales: torch.Tensor, n: int, k: int,
         row_pad: int = ROW_PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """MXTensor codes [..., N, ceil(K/32)*16] and scales [..., N, ceil(K/32)] (blocks of 32
    along K) -> kernel-layout codes [..., Np, Kp/2] and transposed scales [..., Kp/32, Np]."""
    lead = codes.shape[:-2]
    kp, np_ = _padded(n, k, row_pad)
    out_c = torch.zeros((*lead, np_, kp // 2), dtype=torch.uint8, device=codes.device)
    out_s = torch.full((*lead, np_, kp // BLOCK_SIZE), E8M0_BIAS, dtype=torch.uint8,
                       device=codes.device)
    out_c[..., :n, : codes.shape[-1]] = codes
    out_s[..., :n, : scales.shape[-1]] = scales
    # nibbles in element order [..., Np, groups, 64] -> split each group's two blocks
    nib = torch.stack((out_c & 0xF, out_c >> 4), dim=-1).reshape(*lead, np_, -1, GROUP)
    packed = nib[..., :BLOCK_SIZE] | (_rotate(nib[..., BLOCK_SIZE:]) << 4)
    return packed.reshape(*lead, np_, kp // 2).contiguous(), out_s.transpose(-1, -2).contiguous()


def unpack(codes: torch.Tensor, scales: torch.Tensor, n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of `pack`: MXTensor codes and scales of an [..., N, K] weight, exactly."""
    lead = codes.shape[:-2]
    g = codes[..., :n, :].reshape(*lead, n, -1, BLOCK_SIZE)
    nib = torch.cat((g & 0xF, _unrotate(g >> 4)), dim=-1)  # [..., N, groups, 64] in element order
    pairs = nib.reshape(*lead, n, -1, 2)
    nb = -(-k // BLOCK_SIZE)
    plain = (pairs[..., 0] | (pairs[..., 1] << 4))[..., : nb * BLOCK_SIZE // 2]
    return plain.contiguous(), scales[..., :nb, :n].transpose(-1, -2).contiguous()


def prepack(w: MXTensor) -> HopperWeight:
    """The kernel layout of a weight for `mxfp4.linear` (see HopperWeight)."""
    return HopperWeight.from_mx(w)
