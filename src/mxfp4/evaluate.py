"""Model-level accuracy: sliding-window perplexity and per-block QSNR against a float model."""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Perplexity:
    perplexity: float
    mean_nll: float
    tokens: int  # tokens scored
    windows: int
    context: int
    stride: int
    seconds: float


def sliding_windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, scored) windows over n tokens: every token after the first is scored once.

    Window [begin, end) scores its last `scored` tokens, each predicted from the tokens before
    it in the window (at least context - stride of them, except in the first window).
    """
    if context < 2 or not 1 <= stride <= context:
        raise ValueError(f"need context >= 2 and 1 <= stride <= context, got {context}, {stride}")
    if n < 2:
        raise ValueError(f"need at least 2 tokens to score, got {n}")
    out, prev_end = [], 1
    for begin in range(0, n, stride):
        end = min(begin + context, n)
        if end > prev_end:
            out.append((begin, end, end - prev_end))
            prev_end = end
        if end == n:
            break
    return out


def check_causal_lm(model) -> None:
    """Refuse a model that does not predict the next token, before any work is done.

    `model` is a Hugging Face model or config. Its class and the first class its config.json
    names must be causal LMs: AutoModelForCausalLM loads an encoder folder (BertModel) as
    BertLMHeadModel with a random head. A plain torch module (no config) is taken as it is.
    """
    config = getattr(model, "config", model)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        return
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL

    names = [] if model is config else [type(model).__name__]
    names += (getattr(config, "architectures", None) or [])[:1]
    wrong = [n for n in names if n not in CAUSAL.values()]
    if wrong:
        raise ValueError(f"perplexity needs a causal language model with an LM head (a "
                         f"*ForCausalLM or *LMHeadModel class); this {model_type} model is a "
                         f"{wrong[-1]}, which does not predict the next token")


def _logits(model: nn.Module, ids: torch.Tensor, keep: int) -> torch.Tensor:
    """Logits of the last `keep` positions (asks HF models for only those, to skip LM-head work)."""
    params = inspect.signature(model.forward).parameters
    kwargs = {"logits_to_keep": keep} if "logits_to_keep" in params else {}
    if "use_cache" in params:
        kwargs["use_cache"] = False
    out = model(ids, **kwargs)
    logits = out.logits if hasattr(out, "logits") else out
    return logits[:, -keep:]


def _input_device(model: nn.Module) -> torch.device:
    """Where the token ids go: the input embedding's device (the first layer when dispatched)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    for t in ([emb.weight] if emb is not None else []) + list(model.parameters()):
        if t.device.type != "meta":
            return t.device
    return torch.device("cpu")


@torch.no_grad()
def perplexity(model: nn.Module, tokens: torch.Tensor, *, context: int = 512, stride: int = 256,
               bos_id: int | None = None, progress=None) -> Perplexity:
    """exp(mean NLL) of `tokens` (1-D ids) with sliding windows of `context` tokens.

    With `bos_id`, each window is prefixed by that token (not scored), as models such as Gemma
    expect a BOS at the start of every sequence. `progress(done, total)` is called per window.
    """
    check_causal_lm(model)
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1 or tokens.is_floating_point():
        raise ValueError("tokens must be a 1-D tensor of token ids")
    start = time.perf_counter()
    windows = sliding_windows(tokens.numel(), context, stride)
    device = _input_device(model)
    nll, count = 0.0, 0
    for i, (begin, end, scored) in enumerate(windows):
        ids = tokens[begin:end]
        if bos_id is not None:
            ids = torch.cat((torch.tensor([bos_id], dtype=ids.dtype), ids))
        ids = ids[None].to(device)
        logits = _logits(model, ids, scored + 1)[:, :-1].float()  # position p predicts p + 1
        targets = ids[:, -scored:]
        nll += float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 targets.reshape(-1), reduction="sum"))
        count += scored
        if progress:
            progress(i + 1, len(windows))
    mean = nll / count
    return Perplexity(math.exp(mean), mean, count, len(windows), context, stride,
                      time.perf_counter() - start)


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks: the ModuleList with the most submodules."""
    best = None
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and len(mod):
            size = sum(1 for _ in mod.modules())
            if best is None or size > best[0]:
                best = (size, mod)
    if best is None:
        raise ValueError("the model has no ModuleList of decoder blocks")
    return best[1]


def _block_outputs(model: nn.Module, ids: torch.Tensor) -> tuple[list, torch.Tensor]:
    outs, hooks = [], []

    def grab(module, args, output):
        outs.append((output[0] if isinstance(output, (tuple, list)) else output).float().cpu())

    for block in decoder_blocks(model):
        hooks.append(block.register_forward_hook(grab))
    try:
        logits = _logits(model, ids.to(_input_device(model)), ids.shape[1]).float().cpu()
    finally:
        for h in hooks:
            h.remove()
    return outs, logits


@torch.no_grad()
def hidden_state_qsnr(model: nn.Module, reference: nn.Module, tokens: torch.Tensor, *,
                      context: int = 512, max_tokens: int = 2048,
                      bos_id: int | None = None) -> list[tuple[str, float]]:
    """QSNR (dB) of each decoder block's output, and of the logits, against `reference`.

    Both models read the same windows (the first `max_tokens` tokens in non-overlapping
    windows of `context`); QSNR = 10·log10(Σ ref² / Σ (out − ref)²) over all positions.
    """
    check_causal_lm(model)
    check_causal_lm(reference)
    signal, noise = None, None
    for begin in range(0, min(tokens.numel(), max_tokens), context):
        ids = tokens[begin:begin + context]
        if bos_id is not None:
            ids = torch.cat((torch.tensor([bos_id], dtype=ids.dtype), ids))
        ids = ids[None]
        outs, logits = _block_outputs(model, ids)
        refs, ref_logits = _block_outputs(reference, ids)
        if len(outs) != len(refs):
            raise ValueError(f"the models have {len(outs)} and {len(refs)} decoder blocks")
        pairs = list(zip(outs, refs)) + [(logits, ref_logits)]
        s = [float(r.pow(2).sum(dtype=torch.float64)) for _, r in pairs]
        e = [float((o - r).pow(2).sum(dtype=torch.float64)) for o, r in pairs]
        signal = s if signal is None else [a + b for a, b in zip(signal, s)]
        noise = e if noise is None else [a + b for a, b in zip(noise, e)]
    labels = [f"block {i}" for i in range(len(signal) - 1)] + ["logits"]
    return [(lab, math.inf if n == 0 else 10 * math.log10(s / n))
            for lab, s, n in zip(labels, signal, noise)]


def plot_qsnr(rows: list[tuple[str, float]], path: str, title: str) -> None:
    """A PNG of QSNR per block (line) with the logits' QSNR as a dashed level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from .tensor import atomic_write

    blocks = [(i, q) for i, (lab, q) in enumerate(rows) if lab.startswith("block")]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.plot([i for i, _ in blocks], [q for _, q in blocks], marker="o", label="block output")
    if rows and rows[-1][0] == "logits":
        ax.axhline(rows[-1][1], linestyle="--", color="gray", label="logits")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("decoder block")
    ax.set_ylabel("QSNR vs float (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
