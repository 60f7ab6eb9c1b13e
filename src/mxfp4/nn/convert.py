"""quantize_model: swap a model's nn.Linear (and optionally nn.Embedding) layers for MXFP4 ones."""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..algorithms.gptq import HessianAccumulator, gptq_quantize
from ..algorithms.hadamard import rotate
from ..codec import SCALE_RULES, dequantize_blocks
from ..format import BLOCK_SIZE
from ..tensor import MXTensor
from .embedding import MXEmbedding
from .linear import MXLinear, is_linear, linear_weight

METHODS = ("rtn", "mse", "gptq")
ROUTER_NAMES = ("router", "gate")  # MoE routers: gpt-oss `mlp.router`, Mixtral/Qwen `...gate`


@dataclass
class LayerReport:
    name: str
    kind: str  # "linear", "embedding" or "tied" (an LM head sharing a quantized embedding)
    shape: tuple
    qsnr_db: float
    bytes_before: int
    bytes_after: int


@dataclass
class QuantizeSummary:
    """What quantize_model did: converted layers, skipped candidates with reasons, model bytes."""

    method: str
    scale_rule: str
    hadamard: bool
    layers: list[LayerReport] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0

    @property
    def converted(self) -> int:
        return len(self.layers)


def matches(name: str, patterns) -> bool:
    """Glob patterns on the full module name (`*.mlp.*`), or regular expressions as `re:...`."""
    for p in patterns or ():
        if p.startswith("re:"):
            if re.search(p[3:], name):
                return True
        elif fnmatch.fnmatchcase(name, p):
            return True
    return False


def select_modules(model: nn.Module, *, include=None, exclude=None, embeddings: bool = False,
                   block_size: int = BLOCK_SIZE) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The modules quantize_model would convert, and the skipped candidates with reasons.

    Candidates are nn.Linear, transformers' Conv1D (GPT-2's linear layers, weight [in, out])
    and nn.Embedding; an empty first dict means there is nothing to convert. Skipped by
    default: the LM head, MoE routers (a last name part in ROUTER_NAMES) and embeddings (unless
    `embeddings`). A default-skipped module is taken when an include pattern equals its name
    exactly.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    chosen, skipped = {}, {}
    for name, mod in model.named_modules():
        linear = is_linear(mod)
        is_embedding = isinstance(mod, nn.Embedding)  # subclasses too, e.g. Gemma's scaled one
        if not (linear or is_embedding):
            continue
        explicit = name in (include or ())
        if include and not matches(name, include):
            continue
        if matches(name, exclude):
            skipped[name] = "excluded by pattern"
            continue
        if not explicit:
            if is_embedding and not embeddings:
                skipped[name] = "embedding (pass embeddings=True / --embeddings)"
                continue
            if linear and (mod is head or name.split(".")[-1] == "lm_head"):
                skipped[name] = "LM head (kept by default)"
                continue
            if linear and name.split(".")[-1] in ROUTER_NAMES:
                skipped[name] = "MoE router (kept by default)"
                continue
        k = (linear_weight(mod) if linear else mod.weight).shape[1]
        if k % block_size:
            skipped[name] = f"input size {k} is not a multiple of {block_size}"
            continue
        chosen[name] = mod
    return chosen, skipped


def quantize_model(model: nn.Module, *, method: str = "rtn", scale_rule: str | None = None,
                   block_size: int = BLOCK_SIZE, hadamard: bool = False, include=None,
                   exclude=None, embeddings: bool = False, calibration=None, damp: float = 0.01,
                   progress=None, on_block_start=None, on_block_end=None) -> QuantizeSummary:
    """Replace the model's Linear layers by MXLinear in place; return a QuantizeSummary.

    method: "rtn" (round to nearest with `scale_rule`, default floor), "mse" (rtn with the
    codec's per-block scale search) or "gptq" (error feedback; needs `calibration`, an iterable
    of model inputs: token-id tensors, or dicts / tokenizer BatchEncodings of keyword arguments,
    whose `attention_mask` keeps padded positions out of the statistics). `hadamard` rotates each
    weight's input dimension in blocks (see MXLinear). `progress(name, done, total)` is called
    after each layer. `on_block_start/on_block_end(index, block)` let a caller load and release
    one decoder block's weights at a time during GPTQ (see mxfp4.io.hf).
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "mse":
        if scale_rule not in (None, "mse"):
            raise ValueError(f"method 'mse' searches the scales itself; got scale_rule={scale_rule!r}")
        scale_rule = "mse"
    scale_rule = scale_rule or "floor"
    if scale_rule not in SCALE_RULES:
        raise ValueError(f"scale_rule must be one of {SCALE_RULES}, got {scale_rule!r}")
    if method == "gptq" and calibration is None:
        raise ValueError("method 'gptq' needs calibration inputs")
    summary = QuantizeSummary(method, scale_rule, hadamard, bytes_before=model_bytes(model))
    targets, summary.skipped = select_modules(model, include=include, exclude=exclude,
                                              embeddings=embeddings, block_size=block_size)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    total = len(targets)

    def done(name, kind, old, new_weight: MXTensor, new_module):
        w = (linear_weight(old) if kind == "linear" else old.weight).detach()
        report = LayerReport(name, kind, tuple(w.shape), _qsnr(w, new_weight, new_module),
                             w.nbytes, new_weight.nbytes)
        summary.layers.append(report)
        _set_module(model, name, new_module)
        if progress:
            progress(name, len(summary.layers), total)

    linears = {n: m for n, m in targets.items() if not isinstance(m, nn.Embedding)}
    for name, emb in targets.items():
        if isinstance(emb, nn.Embedding):
            new = MXEmbedding.from_embedding(emb, scale_rule=scale_rule, block_size=block_size)
            done(name, "embedding", emb, new.weight_mx, new)
            _tie_head(model, head, emb, new, summary, linears)
    if method == "gptq":
        _gptq_model(model, linears, calibration, scale_rule, block_size, hadamard, damp, done,
                    summary, on_block_start, on_block_end)
    else:
        for name, lin in linears.items():
            new = MXLinear.from_linear(lin, scale_rule=scale_rule, block_size=block_size,
                                       hadamard=hadamard)
            done(name, "linear", lin, new.weight_mx, new)
    summary.bytes_after = model_bytes(model)
    summary.seconds = time.perf_counter() - start
    return summary


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers, each shared tensor counted once."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.device.type == "meta":
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.dtype, tuple(t.shape))
        if key not in seen:
            seen.add(key)
            total += t.nbytes
    return total


def _tie_head(model, head, emb, new_emb: MXEmbedding, summary, linears) -> None:
    """An LM head sharing the embedding's weight follows it: an MXLinear on the same codes
    (kept portable, even on CUDA, so that the two share them and a checkpoint stores them once;
    `prepack()` the head to trade a second copy for the faster kernel layout)."""
    if not isinstance(head, nn.Linear) or head.weight is not emb.weight:
        return
    name = next(n for n, m in model.named_modules() if m is head)
    tied = MXLinear(new_emb.weight_mx, head.bias, packed=False)
    summary.layers.append(LayerReport(name, "tied", tuple(head.weight.shape),
                                      summary.layers[-1].qsnr_db, 0, 0))
    summary.skipped.pop(name, None)
    linears.pop(name, None)
    _set_module(model, name, tied)


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _qsnr(w: torch.Tensor, mx: MXTensor, module: nn.Module, rows: int = 8192) -> float:
    """QSNR (dB) of the layer's effective weight against w, in row chunks to bound memory."""
    hadamard = getattr(module, "hadamard", False)
    signal = noise = 0.0
    for r in range(0, w.shape[0], rows):
        ref = w[r:r + rows].to(torch.float64)
        part = dequantize_blocks(mx.codes[r:r + rows], mx.scales[r:r + rows],
                                 torch.Size((ref.shape[0], w.shape[1])), 1, mx.block_size)
        if hadamard:
            part = rotate(part, mx.block_size)
        signal += float((ref * ref).sum())
        noise += float(((ref - part.to(torch.float64)) ** 2).sum())
    if noise == 0:
        return float("inf")
    return float("-inf") if signal == 0 else 10 * torch.log10(torch.tensor(signal / noise)).item()


# -- GPTQ over a whole model -----------------------------------------------------------

class _Stop(Exception):
    pass


class _Catcher(nn.Module):
    """Stands in for a decoder block: records its inputs and passes the hidden state on."""

    def __init__(self, block: nn.Module, last: bool, record: list):
        super().__init__()
        self.block, self.last, self.record = block, last, record

    def __getattr__(self, name):  # models read attributes such as `attention_type` of blocks
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["block"], name)

    def forward(self, *args, **kwargs):
        if args:
            hidden, rest = args[0], args[1:]
        else:
            hidden, rest = kwargs.pop("hidden_states"), ()
        self.record.append((hidden, rest, kwargs))
        if self.last:
            raise _Stop
        return hidden


def find_blocks(model: nn.Module, names) -> tuple[str, nn.ModuleList] | None:
    """The ModuleList holding the most of `names` (the decoder blocks), or None."""
    best = None
    for lname, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod):
            count = sum(1 for n in names if n.startswith(lname + "."))
            if count and (best is None or count > best[2]):
                best = (lname, mod, count)
    return best[:2] if best else None


def _call(model, batch):
    if isinstance(batch, Mapping):  # dicts and tokenizer outputs (BatchEncoding is no dict)
        return model(**batch)
    return model(batch)


def _attention_mask(batch) -> torch.Tensor | None:
    """The batch's attention_mask [batch, seq] (0 at padding), None for plain token ids."""
    return batch.get("attention_mask") if isinstance(batch, Mapping) else None


def block_inputs(model: nn.Module, blocks: nn.ModuleList, calibration) -> list[list]:
    """Per calibration batch, the (hidden, args, kwargs) each block receives in the float model.

    Runs the model once per batch with every block replaced by a recorder, so no block is
    computed; only the first block's hidden state is real, later ones are rebuilt by the caller.
    """
    records, saved = [], list(blocks)
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    try:
        if use_cache is not None:
            config.use_cache = False
        for batch in calibration:
            record = []
            for i, blk in enumerate(saved):
                blocks[i] = _Catcher(blk, i == len(saved) - 1, record)
            try:
                with torch.no_grad():
                    _call(model, batch)
            except _Stop:
                pass
            if len(record) != len(saved):
                raise RuntimeError(f"calibration reached {len(record)} of {len(saved)} blocks")
            records.append(record)
    finally:
        for i, blk in enumerate(saved):
            blocks[i] = blk
        if use_cache is not None:
            config.use_cache = use_cache
    return records


def _block_out(block, hidden, rest, kwargs):
    out = block(hidden, *rest, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


def _gptq_layer(lin: nn.Module, hessian, scale_rule, block_size, hadamard, damp) -> MXLinear:
    w = linear_weight(lin).detach().float()
    if hadamard:
        w = rotate(w, block_size)
    mx = gptq_quantize(w, hessian, block_size=block_size, scale_rule=scale_rule, damp=damp)
    return MXLinear(mx, lin.bias, hadamard=hadamard, method="gptq")


def _gptq_model(model, linears, calibration, scale_rule, block_size, hadamard, damp, done,
                summary, on_block_start, on_block_end) -> None:
    calibration = list(calibration)
    masks = [_attention_mask(batch) for batch in calibration]

    def gptq_layers(layers: dict, run_batch) -> None:
        """Collect each layer's input Hessian while `run_batch(b)` runs calibration batch b
        (only the positions its attention mask keeps), then GPTQ it."""
        accs = {n: HessianAccumulator(linear_weight(m).shape[1], block_size if hadamard else None,
                                    linear_weight(m).device)
                for n, m in layers.items()}
        mask = None  # the attention mask of the batch being run; the hooks read it

        def hook(acc):
            return lambda module, args: acc.add(args[0], mask)

        hooks = [layers[n].register_forward_pre_hook(hook(a)) for n, a in accs.items()]
        try:
            with torch.no_grad():
                for b in range(len(calibration)):
                    mask = masks[b]
                    run_batch(b)
        finally:
            for h in hooks:
                h.remove()
        for name, lin in layers.items():
            done(name, "linear", lin, *_pair(_gptq_layer(lin, accs[name].result(), scale_rule,
                                                         block_size, hadamard, damp)))

    found = find_blocks(model, linears)
    if found is None:  # no repeated blocks: one pass with hooks on every layer
        gptq_layers(linears, lambda b: _call(model, calibration[b]))
        return
    prefix, blocks = found
    records = block_inputs(model, blocks, calibration)
    hidden = [rec[0][0] for rec in records]
    for i, block in enumerate(blocks):
        if on_block_start:
            on_block_start(i, block)
        bprefix = f"{prefix}.{i}."
        mine = {n: m for n, m in linears.items() if n.startswith(bprefix)}
        gptq_layers(mine, lambda b: _block_out(block, hidden[b], *records[b][i][1:]))
        with torch.no_grad():
            hidden = [_block_out(block, hidden[b], rec[i][1], rec[i][2])
                      for b, rec in enumerate(records)]
        if on_block_end:
            on_block_end(i, block)
    for name, lin in linears.items():  # layers outside the blocks never saw block inputs
        if not name.startswith(prefix + "."):
            new = MXLinear.from_linear(lin, scale_rule=scale_rule, block_size=block_size,
                                       hadamard=hadamard)
            summary.skipped[name + " (rtn)"] = "outside the decoder blocks: GPTQ fell back to rtn"
            done(name, "linear", lin, new.weight_mx, new)


def _pair(module: MXLinear):
    return module.weight_mx, module
