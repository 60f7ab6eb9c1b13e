"""Which tensors of a file or folder are stored MXFP4, in each format mxfp4 writes or reads.

  gpt-oss              NAME_blocks [..., n, 16] + NAME_scales [..., n]: blocks of 32 on the last axis
  mxfp4 checkpoint     M.weight_codes + M.weight_scales (save_quantized, `mxfp4 quantize`); the record
                       of module M in mxfp4_config.json gives shape, axis, block size and scale rule
  compressed-tensors   M.weight_packed [out, in/2] + M.weight_scale [out, in/32], both uint8
                       (`--format compressed-tensors`): blocks of 32 on the input axis
  MXTensor file        codes + scales, with shape, axis, block size and scale rule in the file's
                       metadata (MXTensor.save)

Each finding carries an MXTensor on the meta device: the library checks the shapes exactly as when
it loads the real tensors, and nothing is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..format import BLOCK_SIZE
from ..tensor import MXTensor

GPT_OSS, CHECKPOINT, COMPRESSED, MXTENSOR = "gpt-oss", "mxfp4 checkpoint", "compressed-tensors", "MXTensor file"


@dataclass(frozen=True)
class Stored:
    codes: str  # the names of the two tensors in the index
    scales: str
    format: str
    spec: MXTensor  # shape, axis, block size; codes and scales on the meta device
    blocked: bool = False  # codes stored as [..., n, block_size / 2] (gpt-oss), not as MXTensor.codes
    scale_rule: str | None = None  # as the format records it; None where it does not
    note: str = ""
    qsnr_db: float | None = None  # against the float weight, where `mxfp4 quantize` recorded it


def _meta(entry) -> torch.Tensor:
    if entry.dtype != "U8":
        raise ValueError(f"its tensors must be uint8, got {entry.dtype}")
    return torch.empty(entry.shape, dtype=torch.uint8, device="meta")


class _Finder:
    def __init__(self, index: dict):
        self.index, self.found, self.warnings = index, {}, []

    def add(self, codes: str, scales: str, fmt: str, make, **info) -> None:
        try:
            self.found[codes] = Stored(codes, scales, fmt, make(), **info)
        except (TypeError, ValueError, IndexError) as err:
            self.warnings.append(f"{codes!r} looks like {fmt} MXFP4 but cannot be decoded: {err}")

    def gpt_oss(self) -> None:
        index = self.index
        for name in index:
            scales = name[: -len("_blocks")] + "_scales"
            if name.endswith("_blocks") and scales in index:
                self.add(name, scales, GPT_OSS, lambda: MXTensor.from_gpt_oss(
                    _meta(index[name]), _meta(index[scales])), blocked=True)

    def checkpoint(self, records: dict | None) -> None:
        index, records = self.index, records or {}
        for module, rec in records.items():
            codes, scales = f"{module}.weight_codes", f"{module}.weight_scales"
            if codes in index and scales in index:
                self.add(codes, scales, CHECKPOINT, lambda: MXTensor(
                    _meta(index[codes]), _meta(index[scales]), rec["shape"], axis=rec["axis"],
                    block_size=rec["block_size"], scale_rule=rec["scale_rule"]),
                    scale_rule=rec["scale_rule"], qsnr_db=rec.get("qsnr_db"),
                    note="Hadamard-rotated: the decoded values are those of the rotated weight."
                    if rec.get("hadamard") else "")
            elif codes in index or scales in index:  # a shard of a folder holds the other one
                self.warnings.append(f"{module!r}: {codes!r} and {scales!r} are in different files; "
                                     "open the whole folder to decode it")
        for name in index:
            if name.endswith(".weight_codes") and name[: -len(".weight_codes")] not in records:
                self.warnings.append(f"{name!r} has no record in an mxfp4_config.json beside the files, "
                                     "so its shape, axis and block size are unknown")

    def compressed_tensors(self) -> None:
        index = self.index
        for name in index:
            scales = name[: -len("_packed")] + "_scale"
            if name.endswith(".weight_packed") and scales in index and index[scales].dtype == "U8":
                shape = index[name].shape  # uint8 scales: MXFP4 (nvfp4 has fp8 ones, int4 16-bit ones)
                self.add(name, scales, COMPRESSED, lambda: MXTensor(
                    _meta(index[name]), _meta(index[scales]), [*shape[:-1], 2 * shape[-1]],
                    axis=-1, block_size=BLOCK_SIZE))

    def mxtensor_files(self, files: dict) -> None:
        """files: path -> (metadata, {tensor name in the file: name in the index})."""
        for metadata, names in files.values():
            if (metadata or {}).get("format") == "mxfp4" and set(names) == {"codes", "scales"}:
                codes, scales = names["codes"], names["scales"]
                self.add(codes, scales, MXTENSOR, lambda: MXTensor.from_metadata(
                    _meta(self.index[codes]), _meta(self.index[scales]), metadata),
                    scale_rule=metadata.get("scale_rule"))


def find(index: dict, files: dict, records: dict | None) -> tuple[dict, list]:
    """({codes name: Stored}, [why a pair that looks stored cannot be decoded])."""
    finder = _Finder(index)
    finder.gpt_oss()
    finder.checkpoint(records)
    finder.compressed_tensors()
    finder.mxtensor_files(files)
    return finder.found, finder.warnings
