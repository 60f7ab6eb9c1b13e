"""MXTensor: packed E2M1 codes + E8M0 scales + the logical shape they stand for."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import torch

from .codec import SCALE_RULES
from .format import BLOCK_SIZE

FORMAT_NAME = "mxfp4"
FORMAT_VERSION = "1"


@dataclass(eq=False)
class MXTensor:
    """An MXFP4 tensor.

    codes:  uint8, the logical shape with `axis` padded to whole blocks and halved
            (element 2i in the low nibble, 2i+1 in the high nibble).
    scales: uint8 E8M0 bytes, the logical shape with `axis` replaced by the block count.
    """

    codes: torch.Tensor
    scales: torch.Tensor
    shape: torch.Size
    axis: int
    block_size: int = BLOCK_SIZE
    scale_rule: str = "floor"

    def __post_init__(self):
        self.shape = torch.Size(self.shape)
        if self.codes.dtype != torch.uint8 or self.scales.dtype != torch.uint8:
            raise TypeError(f"MXTensor codes and scales must be uint8, got "
                            f"{self.codes.dtype} and {self.scales.dtype}")
        if self.scale_rule not in SCALE_RULES:
            raise ValueError(f"unknown scale_rule {self.scale_rule!r}; expected one of {SCALE_RULES}")
        bs = self.block_size
        if not isinstance(bs, int) or bs < 2 or bs > 1024 or bs & (bs - 1):
            raise ValueError(f"block_size must be a power of two from 2 to 1024, got {bs!r}")
        if not -len(self.shape) <= self.axis < len(self.shape):
            raise IndexError(f"axis {self.axis} is out of range for shape {tuple(self.shape)}")
        self.axis %= len(self.shape)
        want_codes, want_scales = self.packed_shapes(self.shape, self.axis, bs)
        if self.codes.shape != want_codes or self.scales.shape != want_scales:
            raise ValueError(
                f"MXTensor of shape {tuple(self.shape)} (axis={self.axis}, block_size={bs}) needs "
                f"codes {tuple(want_codes)} and scales {tuple(want_scales)}, got "
                f"{tuple(self.codes.shape)} and {tuple(self.scales.shape)}")
        if self.codes.device != self.scales.device:
            raise ValueError("MXTensor codes and scales must be on the same device")

    @staticmethod
    def packed_shapes(shape, axis: int, block_size: int) -> tuple[torch.Size, torch.Size]:
        n_blocks = -(-shape[axis] // block_size)
        codes, scales = list(shape), list(shape)
        codes[axis] = n_blocks * block_size // 2
        scales[axis] = n_blocks
        return torch.Size(codes), torch.Size(scales)

    # -- basics -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.codes.device

    @property
    def nbytes(self) -> int:
        """Bytes of storage: packed codes plus scales (4.25 bits per element at block 32)."""
        return self.codes.nbytes + self.scales.nbytes

    def numel(self) -> int:
        return self.shape.numel()

    def dequantize(self, dtype: torch.dtype = torch.float32, *, backend: str = "auto") -> torch.Tensor:
        from .ops import dequantize

        return dequantize(self, dtype, backend=backend)

    def to(self, device) -> "MXTensor":
        return self._with(self.codes.to(device), self.scales.to(device))

    def cpu(self) -> "MXTensor":
        return self.to("cpu")

    def _with(self, codes, scales, **changes) -> "MXTensor":
        fields = dict(shape=self.shape, axis=self.axis, block_size=self.block_size,
                      scale_rule=self.scale_rule)
        fields.update(changes)
        return MXTensor(codes, scales, **fields)

    def __eq__(self, other) -> bool:
        if not isinstance(other, MXTensor):
            return NotImplemented
        return (self.metadata() == other.metadata() and self.device == other.device
                and torch.equal(self.codes, other.codes) and torch.equal(self.scales, other.scales))

    __hash__ = None

    def __repr__(self) -> str:
        return (f"MXTensor(shape={tuple(self.shape)}, axis={self.axis}, block_size={self.block_size}, "
                f"scale_rule={self.scale_rule!r}, device={self.device}, nbytes={self.nbytes})")

    # -- files -----------------------------------------------------------------------
    def metadata(self) -> dict[str, str]:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "shape": json.dumps(list(self.shape)), "axis": str(self.axis),
                "block_size": str(self.block_size), "scale_rule": self.scale_rule}

    @classmethod
    def from_metadata(cls, codes, scales, meta: dict[str, str]) -> "MXTensor":
        try:
            if meta.get("format") != FORMAT_NAME:
                raise ValueError(f"format is {meta.get('format')!r}, not {FORMAT_NAME!r}")
            return cls(codes, scales, shape=json.loads(meta["shape"]), axis=int(meta["axis"]),
                       block_size=int(meta["block_size"]), scale_rule=meta["scale_rule"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(f"not a valid MXTensor record: {err}") from err

    def save(self, path: str | os.PathLike) -> None:
        """Write codes, scales and metadata to a .safetensors file, atomically."""
        from safetensors.torch import save_file

        tensors = {"codes": self.codes.contiguous().cpu(), "scales": self.scales.contiguous().cpu()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=self.metadata()))

    @classmethod
    def load(cls, path: str | os.PathLike, device="cpu") -> "MXTensor":
        """Read a file written by `save`; a corrupt or foreign file raises ValueError."""
        from safetensors import safe_open

        try:
            with safe_open(os.fspath(path), framework="pt", device=str(device)) as f:
                meta = f.metadata() or {}
                names = set(f.keys())
                if names != {"codes", "scales"}:
                    raise ValueError(f"expected tensors 'codes' and 'scales', found {sorted(names)}")
                codes, scales = f.get_tensor("codes"), f.get_tensor("scales")
        except FileNotFoundError:
            raise
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise ValueError(f"cannot read MXTensor from {os.fspath(path)!r}: {err}") from err
        try:
            return cls.from_metadata(codes, scales, meta)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{os.fspath(path)!r}: {err}") from err

    # -- other layouts ---------------------------------------------------------------
    def to_gpt_oss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-copy gpt-oss views: blocks [..., K/32, 16] and scales [..., K/32]."""
        if self.axis != len(self.shape) - 1 or self.block_size != BLOCK_SIZE:
            raise ValueError("the gpt-oss layout needs blocks of 32 along the last axis, got "
                             f"axis={self.axis}, block_size={self.block_size}")
        return self.codes.view(*self.scales.shape, BLOCK_SIZE // 2), self.scales

    @classmethod
    def from_gpt_oss(cls, blocks: torch.Tensor, scales: torch.Tensor, shape=None,
                     scale_rule: str = "floor") -> "MXTensor":
        """Wrap gpt-oss `blocks [..., K/32, 16]` and `scales [..., K/32]` without copying.

        `shape` defaults to [..., K]; pass a shorter last dimension if the tensor was padded.
        `scale_rule` is only recorded: the scales are taken as given.
        """
        if blocks.dim() < 2 or blocks.shape[-1] != BLOCK_SIZE // 2:
            raise ValueError(f"gpt-oss blocks must have shape [..., K/32, 16], got {tuple(blocks.shape)}")
        if scales.shape != blocks.shape[:-1]:
            raise ValueError(f"gpt-oss scales must have shape {tuple(blocks.shape[:-1])}, "
                             f"got {tuple(scales.shape)}")
        if shape is None:
            shape = (*scales.shape[:-1], scales.shape[-1] * BLOCK_SIZE)
        return cls(blocks.flatten(-2), scales, shape=shape, axis=-1, block_size=BLOCK_SIZE,
                   scale_rule=scale_rule)

    def to_torch_dtypes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Views as torch.float4_e2m1fn_x2 codes and torch.float8_e8m0fnu scales (no copy)."""
        _require_torch_fp4()
        return self.codes.view(torch.float4_e2m1fn_x2), self.scales.view(torch.float8_e8m0fnu)

    @classmethod
    def from_torch_dtypes(cls, codes: torch.Tensor, scales: torch.Tensor, shape, axis: int = -1,
                          block_size: int = BLOCK_SIZE, scale_rule: str = "floor") -> "MXTensor":
        _require_torch_fp4()
        if codes.dtype != torch.float4_e2m1fn_x2 or scales.dtype != torch.float8_e8m0fnu:
            raise TypeError(f"expected float4_e2m1fn_x2 codes and float8_e8m0fnu scales, got "
                            f"{codes.dtype} and {scales.dtype}")
        return cls(codes.view(torch.uint8), scales.view(torch.uint8), shape=shape, axis=axis,
                   block_size=block_size, scale_rule=scale_rule)


def _require_torch_fp4() -> None:
    if not (hasattr(torch, "float4_e2m1fn_x2") and hasattr(torch, "float8_e8m0fnu")):
        raise RuntimeError(f"torch {torch.__version__} has no float4_e2m1fn_x2 / float8_e8m0fnu dtypes")


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(tmp_path) on a temp file beside `path`, then rename it into place."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
