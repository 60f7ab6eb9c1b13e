"""Tensors a checkpoint already stores in MXFP4: gpt-oss style NAME_blocks [..., n, 16] + NAME_scales [..., n].

There is no original to compare with, so the view shows what is stored: the scale exponents, the
code usage, and single blocks decoded by MXTensor.from_gpt_oss. Read in slices like float tensors.
"""

from __future__ import annotations

import math

import torch

from ..format import BLOCK_SIZE, E8M0_BIAS, E8M0_NAN
from ..tensor import MXTensor
from . import models
from .validate import ApiError

BLOCKS, SCALES = "_blocks", "_scales"


def _pair(root, rel, name):
    """(blocks path, blocks shape, scales path, scales name) of a stored MXFP4 tensor."""
    index = models._index(root, rel)
    if name not in index or models._kind(name, index[name][1], index[name][2], index) != models.STORED:
        raise ApiError(404, f"no stored MXFP4 tensor {str(name)[:80]!r} (NAME{BLOCKS} with NAME{SCALES})")
    scales_name = name[: -len(BLOCKS)] + SCALES
    bpath, bshape, _ = index[name]
    spath, sshape, sdtype = index[scales_name]
    if bshape[-1] != BLOCK_SIZE // 2 or tuple(sshape) != tuple(bshape[:-1]) or sdtype != "U8" or len(bshape) < 2:
        raise ApiError(422, f"{name!r} {list(bshape)} and {scales_name!r} {list(sshape)} are not a gpt-oss "
                            f"MXFP4 pair ([..., n, {BLOCK_SIZE // 2}] uint8 blocks, [..., n] uint8 scales)")
    return bpath, tuple(bshape), spath, scales_name


def _slices(path, name, shape):
    with models._open(path) as f:
        s = f.get_slice(name)
        for a, b in models._row_windows(shape, models.CHUNK_ELEMENTS, sample=False):
            yield s[a:b]


def detail(root, rel, name) -> dict:
    bpath, bshape, spath, scales_name = _pair(root, rel, name)
    scale_hist = torch.zeros(256, dtype=torch.int64)
    code_hist = torch.zeros(16, dtype=torch.int64)
    for chunk in _slices(spath, scales_name, bshape[:-1]):
        scale_hist += torch.bincount(chunk.flatten(), minlength=256)
    for chunk in _slices(bpath, name, bshape):
        code_hist += models._code_counts(chunk, 0)
    rows = math.prod(bshape[:-2])
    return {"name": name, "stored": True, "shape": [*bshape[:-2], bshape[-2] * BLOCK_SIZE],
            "rows": rows, "blocks_per_row": bshape[-2], "numel": rows * bshape[-2] * BLOCK_SIZE,
            "nan_blocks": int(scale_hist[E8M0_NAN]),
            "scale_exponents": [{"exponent": None if b == E8M0_NAN else b - E8M0_BIAS, "blocks": int(c)}
                                for b, c in enumerate(scale_hist.tolist()) if c],
            "code_counts": code_hist.tolist()}


def block_values(root, rel, name, row: int, block: int) -> dict:
    """One stored block decoded by the library: row and block of the [rows, n * 32] view."""
    bpath, bshape, spath, scales_name = _pair(root, rel, name)
    rows, n = math.prod(bshape[:-2]), bshape[-2]
    if not 0 <= row < rows or not 0 <= block < n:
        raise ApiError(400, f"block ({row}, {block}) is outside {name!r} with {rows} rows of {n} blocks")
    if len(bshape) == 2:  # one row: the first axis is the block axis
        first, last, pick = block, block + 1, (0, 0)
    else:
        per = math.prod(bshape[1:-2])  # rows under one index of the first axis
        first, last, pick = row // per, row // per + 1, (row % per, block)
    with models._open(bpath) as f:
        packed = f.get_slice(name)[first:last].reshape(-1, last - first if len(bshape) == 2 else n,
                                                       BLOCK_SIZE // 2)[pick]
    with models._open(spath) as f:
        scale = f.get_slice(scales_name)[first:last].reshape(-1, 1 if len(bshape) == 2 else n)[pick]
    q = MXTensor.from_gpt_oss(packed.reshape(1, BLOCK_SIZE // 2), scale.reshape(1))
    return {"name": name, "row": row, "block": block, "values": q.dequantize().tolist(),
            "scale_exponent": int(scale) - E8M0_BIAS}
