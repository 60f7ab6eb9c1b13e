"""Tensors a checkpoint already stores in MXFP4, in any format formats.py finds.

There is no original to compare with, so the view shows what is stored: the scale exponents, the
code usage, and single blocks decoded by MXTensor. A tensor of any axis is seen as rows of blocks:
row r is one line along the blocked axis (the other axes in C order), block b its b-th block.
Codes and scales are read in slices, like float tensors.
"""

from __future__ import annotations

import math

import torch

from ..format import E8M0_BIAS, E8M0_NAN
from ..tensor import MXTensor
from . import models
from .validate import ApiError, plain


def _stored(root, rel, name):
    """(Stored record, codes Entry, scales Entry) of a stored MXFP4 tensor."""
    index = models._index(root, rel)
    models._entry(index, rel, name)
    if name not in index.stored:
        raise ApiError(404, f"{str(name)[:80]!r} is not a stored MXFP4 tensor")
    st = index.stored[name]
    return st, index.tensors[st.codes], index.tensors[st.scales]


def _grid(spec: MXTensor) -> tuple[int, int]:
    """(rows, blocks per row) of the tensor seen as rows of blocks along its axis."""
    rows = math.prod(d for i, d in enumerate(spec.shape) if i != spec.axis)
    return rows, spec.scales.shape[spec.axis]


def _histogram(entry, minlength: int, count) -> torch.Tensor:
    """Sum of count(slice) over slices of the tensor along its first axis."""
    total = torch.zeros(minlength, dtype=torch.int64)
    with models._open(entry.path) as f:
        s = f.get_slice(entry.key)
        for a, b in models._row_windows(entry.shape, models.CHUNK_ELEMENTS, sample=False):
            total += count(s[a:b])
    return total


def detail(root, rel, name) -> dict:
    st, codes, scales = _stored(root, rel, name)
    spec = st.spec
    rows, n = _grid(spec)
    length = spec.shape[spec.axis]
    padding = rows * (n * spec.block_size - length)  # zeros that fill the last block of each row
    scale_hist = _histogram(scales, 256, lambda x: torch.bincount(x.flatten(), minlength=256))
    code_hist = _histogram(codes, 16, lambda x: models._code_counts(x, 0))
    code_hist[0] -= padding
    return {"name": name, "stored": True, "format": st.format, "shape": list(spec.shape),
            "axis": spec.axis, "block_size": spec.block_size, "scale_rule": st.scale_rule,
            "note": st.note, "rows": rows, "blocks_per_row": n, "numel": spec.numel(),
            "nan_blocks": int(scale_hist[E8M0_NAN]),
            "scale_exponents": [{"exponent": None if b == E8M0_NAN else b - E8M0_BIAS, "blocks": int(c)}
                                for b, c in enumerate(scale_hist.tolist()) if c],
            "code_counts": code_hist.tolist()}


def _where(spec: MXTensor, row: int, block: int) -> tuple[list, list]:
    """Slices of the scales and codes tensors (MXTensor layout) that hold one block."""
    others = [d for i, d in enumerate(spec.shape) if i != spec.axis]
    index = []
    for d in reversed(others):
        row, i = divmod(row, d)
        index.insert(0, slice(i, i + 1))
    half = spec.block_size // 2
    scale_at = index[:spec.axis] + [slice(block, block + 1)] + index[spec.axis:]
    codes_at = index[:spec.axis] + [slice(block * half, (block + 1) * half)] + index[spec.axis:]
    return scale_at, codes_at


def block_values(root, rel, name, row: int, block: int) -> dict:
    """One stored block decoded by the library: row and block of the rows-of-blocks view."""
    st, codes, scales = _stored(root, rel, name)
    spec = st.spec
    rows, n = _grid(spec)
    if not 0 <= row < rows or not 0 <= block < n:
        raise ApiError(400, f"block ({row}, {block}) is outside {name!r} with {plain(rows)} rows of {plain(n)} blocks")
    scale_at, codes_at = _where(spec, row, block)
    if st.blocked:  # gpt-oss: the codes of a block are the last axis, under the scale's index
        codes_at = scale_at + [slice(None)]
    with models._open(scales.path) as f:
        scale = f.get_slice(scales.key)[tuple(scale_at)].reshape(1)
    if int(scale) == E8M0_NAN:
        raise ApiError(422, f"block ({row}, {block}) of {name!r} has the NaN scale 0xFF: all its values are NaN")
    with models._open(codes.path) as f:
        packed = f.get_slice(codes.key)[tuple(codes_at)].reshape(-1)
    length = min(spec.block_size, spec.shape[spec.axis] - block * spec.block_size)  # a padded last block
    q = MXTensor(packed, scale, [length], axis=0, block_size=spec.block_size)
    return {"name": name, "row": row, "block": block, "values": q.dequantize().tolist(),
            "scale_exponent": int(scale) - E8M0_BIAS}
