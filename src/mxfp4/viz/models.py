"""The "your model" view: tensors of a safetensors file or folder, read lazily in row slices.

A float tensor is seen as a matrix [rows, C] blocked along its last axis C (the layout of nn.Linear
weights, whose last axis is the reduction axis K). Statistics stream over slices of at most
CHUNK_ELEMENTS elements, so a large tensor is never read whole. Tensors already stored in MXFP4
(formats.py finds them) are shown by stored.py.
"""

from __future__ import annotations

import math
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ..codec import SCALE_RULES, to_blocks
from ..format import BLOCK_SIZE, E2M1_MAX, E8M0_BIAS, E8M0_NAN, e8m0_to_float32
from ..io.checkpoint import CONFIG_NAME, read_config
from ..ops import quantize
from . import formats
from .api import finite_or_none
from .safe_paths import beside, model_files
from .validate import ApiError, plain

FLOAT_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                "F64": torch.float64}
CHUNK_ELEMENTS = 1 << 20
SAMPLE_ELEMENTS = 1 << 18  # per-rule QSNR in the table uses at most this many elements
HEAT_CELLS = 96  # the per-block error map is pooled to at most this many cells a side
WORST = 10
STORED = "mxfp4 (stored)"
_cache: OrderedDict = OrderedDict()


def _cached(key, compute, size: int = 32):
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    value = compute()
    _cache[key] = value
    while len(_cache) > size:
        _cache.popitem(last=False)
    return value


def _open(path):
    try:
        return safe_open(os.fspath(path), framework="pt", device="cpu")
    except Exception as err:  # safetensors has its own error types for corrupt headers
        raise ApiError(422, f"cannot read {os.path.basename(path)} as safetensors: {err}") from None


@dataclass(frozen=True)
class Entry:
    path: Path
    key: str  # the tensor's name in its file
    shape: tuple
    dtype: str


@dataclass
class Index:
    tensors: dict  # name -> Entry; a name found in two files is FILE:NAME
    stored: dict  # name of the codes tensor -> formats.Stored
    scales: dict  # name of the scales tensor -> name of its codes tensor
    warnings: list


def _index(root, rel) -> Index:
    """Every tensor the path holds, and which are stored MXFP4; cached by file mtimes."""
    files = model_files(root, rel)
    config = beside(root, files, CONFIG_NAME)  # an mxfp4 checkpoint's module records
    key = ("index", tuple((os.fspath(p), os.path.getmtime(p)) for p in files + [config] if p))
    return _cached(key, lambda: _build_index(files, config))


def _build_index(files, config) -> Index:
    found = {}  # path -> (metadata, {name in the file: (shape, dtype)})
    for p in files:
        with _open(p) as f:
            slices = {k: f.get_slice(k) for k in f.keys()}
            found[p] = (f.metadata(), {k: (tuple(s.get_shape()), s.get_dtype()) for k, s in slices.items()})
    seen = Counter(k for _, keys in found.values() for k in keys)
    tensors, names = {}, {}
    for p, (metadata, keys) in found.items():
        names[p] = (metadata, {})
        for k, (shape, dtype) in keys.items():
            name = k if seen[k] == 1 else f"{p.name}:{k}"
            tensors[name] = Entry(p, k, shape, dtype)
            names[p][1][k] = name
    records, warnings = None, []
    if config is not None:
        try:
            records = read_config(os.fspath(config.parent))["modules"]
        except (OSError, ValueError) as err:
            warnings.append(f"{CONFIG_NAME}: {err}")
    stored, more = formats.find(tensors, names, records)
    return Index(tensors, stored, {s.scales: c for c, s in stored.items()}, warnings + more)


def _entry(index: Index, rel, name) -> Entry:
    if not isinstance(name, str) or name not in index.tensors:
        raise ApiError(404, f"no tensor named {str(name)[:80]!r} in {rel[:60]!r}")
    return index.tensors[name]


def _kind(name: str, index: Index) -> str:
    """float (quantizable), stored MXFP4 (its codes), the scales of one, or other."""
    if name in index.stored:
        return STORED
    if name in index.scales:
        return "mxfp4 scales"
    e = index.tensors[name]
    if e.dtype in FLOAT_DTYPES and len(e.shape) >= 1 and math.prod(e.shape) > 0:
        return "float"
    return "other"


def kind(root, rel, name) -> str:
    index = _index(root, rel)
    _entry(index, rel, name)
    return _kind(name, index)


def _row(name: str, e: Entry, index: Index) -> dict:
    row = {"name": name, "shape": list(e.shape), "dtype": e.dtype, "numel": math.prod(e.shape),
           "kind": _kind(name, index)}
    stored = index.stored.get(name) or index.stored.get(index.scales.get(name))
    if stored is not None:
        row.update(format=stored.format, logical_shape=list(stored.spec.shape),
                   recorded_qsnr_db=None if stored.qsnr_db is None else finite_or_none(stored.qsnr_db))
    return row


def tensors(root, rel) -> dict:
    index = _index(root, rel)
    return {"path": rel, "tensors": [_row(n, e, index) for n, e in index.tensors.items()],
            "files": len({e.path for e in index.tensors.values()}), "warnings": index.warnings}


def _float_tensor(root, rel, name) -> Entry:
    index = _index(root, rel)
    e = _entry(index, rel, name)
    if _kind(name, index) != "float":
        raise ApiError(400, f"{name!r} is {e.dtype} {list(e.shape)}: only non-empty float tensors "
                            "can be quantized")
    return e


def _row_windows(shape, max_elements: int, sample: bool):
    """(first, stop) windows along axis 0, each at most max_elements (at least one index).

    With sample=True, at most max_elements in all, spread over 8 evenly spaced windows.
    """
    n0, per = shape[0], math.prod(shape[1:])
    step = max(1, max_elements // max(per, 1))
    if not sample or n0 * per <= max_elements:
        return [(i, min(i + step, n0)) for i in range(0, n0, step)]
    windows = min(8, n0)
    width = max(1, step // windows)
    starts = sorted({round(w * (n0 - width) / max(windows - 1, 1)) for w in range(windows)})
    return [(s, min(s + width, n0)) for s in starts]


def _chunks(path, name, shape, max_elements=None, sample=False):
    """Yield (first_row, x [rows, C] float32) slices of the tensor viewed as [rows, C]."""
    max_elements = max_elements or CHUNK_ELEMENTS
    with _open(path) as f:
        s = f.get_slice(name)
        if len(shape) == 1:  # a vector is one row; read it in block-aligned pieces
            step = max(BLOCK_SIZE, max_elements // BLOCK_SIZE * BLOCK_SIZE)
            pieces = [s[i:min(i + step, shape[0])].float() for i in range(0, shape[0], step)]
            yield 0, torch.cat(pieces)[None, :]
            return
        rows_per = math.prod(shape[1:-1])
        for a, b in _row_windows(shape, max_elements, sample):
            yield a * rows_per, s[a:b].float().reshape(-1, shape[-1])


def qsnr_by_rule(root, rel, name) -> dict:
    """QSNR of the tensor under each scale rule, on up to SAMPLE_ELEMENTS elements."""
    e = _float_tensor(root, rel, name)
    shape = e.shape
    x = torch.cat([c for _, c in _chunks(e.path, e.key, shape, SAMPLE_ELEMENTS, sample=True)])
    out = {}
    for rule in SCALE_RULES:
        err = quantize(x, scale_rule=rule).dequantize() - x
        noise, signal = float(err.double().square().sum()), float(x.double().square().sum())
        out[rule] = finite_or_none(10 * math.log10(signal / noise) if noise and signal else math.inf)
    return {"name": name, "elements_used": x.numel(), "numel": math.prod(shape),
            "sampled": x.numel() < math.prod(shape), "qsnr_db": out}


def _db(signal, noise):
    """10 log10(signal / noise); None for an exact result (no noise)."""
    return 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else None


def _clipped(magnitudes: torch.Tensor, scales: torch.Tensor) -> int:
    """Elements with |x| > 6 * scale (they saturate to +-6 * scale)."""
    limit = E2M1_MAX * e8m0_to_float32(scales)
    return int(torch.count_nonzero(magnitudes > limit[..., None]))


def _code_counts(packed: torch.Tensor, padding: int) -> torch.Tensor:
    """Uses of each 4-bit code, from a histogram of the packed bytes; padding zeros removed."""
    byte_counts = torch.bincount(packed.flatten(), minlength=256).reshape(16, 16)  # [high, low]
    counts = byte_counts.sum(0) + byte_counts.sum(1)
    counts[0] -= padding
    return counts


def tensor_detail(root, rel, name, rule: str) -> dict:
    """Full-tensor statistics for one scale rule, streamed over row slices."""
    e = _float_tensor(root, rel, name)
    key = ("detail", os.fspath(e.path), os.path.getmtime(e.path), e.key, rule)
    return _cached(key, lambda: _detail(e.path, e.key, name, e.shape, rule), size=64)


def _detail(path, key, name, shape, rule):
    cols = shape[-1]
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    n_blocks = -(-cols // BLOCK_SIZE)
    hr, hc = min(HEAT_CELLS, rows), min(HEAT_CELLS, n_blocks)
    heat_noise = torch.zeros(hr * hc, dtype=torch.float64)
    heat_signal = torch.zeros(hr * hc, dtype=torch.float64)
    scale_hist = torch.zeros(256, dtype=torch.int64)
    code_hist = torch.zeros(16, dtype=torch.int64)
    signal = noise = 0.0
    clipped = 0
    worst = []  # (block qsnr, row, block, scale byte, amax)
    col_cell = (torch.arange(n_blocks) * hc // n_blocks)
    for row0, x in _chunks(path, key, shape):
        q = quantize(x, scale_rule=rule)
        xb = to_blocks(x, 1, BLOCK_SIZE)
        eb = to_blocks(q.dequantize(), 1, BLOCK_SIZE).sub_(xb)
        sig = torch.linalg.vector_norm(xb, dim=-1).square_().double()  # [r, n_blocks]
        err = torch.linalg.vector_norm(eb, dim=-1).square_().double()
        signal += float(sig.sum())
        noise += float(err.sum())
        mags = xb.abs_()  # x is not needed signed any more
        clipped += _clipped(mags, q.scales)
        scale_hist += torch.bincount(q.scales.flatten(), minlength=256)
        code_hist += _code_counts(q.codes, x.shape[0] * (n_blocks * BLOCK_SIZE - cols))
        row_cell = (torch.arange(row0, row0 + x.shape[0]) * hr // rows)
        cell = (row_cell[:, None] * hc + col_cell[None, :]).flatten()
        heat_noise.index_add_(0, cell, err.flatten())
        heat_signal.index_add_(0, cell, sig.flatten())
        ratio = torch.where(sig > 0, err / sig.clamp_min(1e-300), torch.zeros_like(err)).flatten()
        top = torch.topk(ratio, min(WORST, ratio.numel()))
        for r, idx in zip(top.values.tolist(), top.indices.tolist()):
            row, blk = divmod(idx, n_blocks)
            if r > 0:
                worst.append((r, row0 + row, blk, int(q.scales[row, blk]),
                              float(mags[row, blk].max())))
        worst = sorted(worst, reverse=True)[:WORST]
    heat = [[_db(s, n) for s, n in zip(heat_signal[i * hc:(i + 1) * hc].tolist(),
                                        heat_noise[i * hc:(i + 1) * hc].tolist())]
            for i in range(hr)]
    numel = math.prod(shape)
    return {"name": name, "shape": list(shape), "rule": rule, "rows": rows, "blocks_per_row": n_blocks,
            "numel": numel, "qsnr_db": _db(signal, noise),
            "mse": noise / numel, "clipped_fraction": clipped / numel,
            "scale_exponents": [{"exponent": None if b == E8M0_NAN else b - E8M0_BIAS, "blocks": int(c)}
                                for b, c in enumerate(scale_hist.tolist()) if c],
            "code_counts": code_hist.tolist(),
            "heatmap": {"rows": hr, "cols": hc, "qsnr_db": heat,
                        "row_span": rows / hr, "block_span": n_blocks / hc},
            "worst_blocks": [{"row": r, "block": b, "qsnr_db": finite_or_none(-10 * math.log10(v)),
                              "scale_exponent": s - E8M0_BIAS, "amax": a}
                             for v, r, b, s, a in worst]}


def block_values(root, rel, name, row: int, block: int) -> dict:
    """The BLOCK_SIZE values of one block, read with a one-row slice."""
    e = _float_tensor(root, rel, name)
    shape, cols = e.shape, e.shape[-1]
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    if not 0 <= row < rows or not 0 <= block * BLOCK_SIZE < cols:
        raise ApiError(400, f"block ({row}, {block}) is outside {name!r} with {plain(rows)} rows of "
                            f"{plain(-(-cols // BLOCK_SIZE))} blocks")
    k0, k1 = block * BLOCK_SIZE, min((block + 1) * BLOCK_SIZE, cols)
    with _open(e.path) as f:
        s = f.get_slice(e.key)
        if len(shape) == 1:
            values = s[k0:k1]
        else:
            rows_per = math.prod(shape[1:-1])
            values = s[row // rows_per:row // rows_per + 1].reshape(-1, cols)[row % rows_per, k0:k1]
    return {"name": name, "row": row, "block": block, "values": values.float().tolist()}
