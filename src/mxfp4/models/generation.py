"""Generation: prefill the prompts into a KV cache, then decode one token per step.

Prompts of different lengths are left-padded (pad_token_id, attention_mask 0), so that every row
advances by one column per step and each sliding-window ring holds the same columns for all
rows; positions count real tokens only, so padding changes no row's result.
Works with any model that has `config` (pad_token_id, eos_token_ids), `check_inputs`,
`new_cache` and `logits_last` (see GptOss).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from .decoder import Decoder
from .sampling import check_sampling, sample


def left_pad(sequences, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences (lists of ints or 1-D tensors) -> ids [B, T] and attention_mask [B, T],
    padded on the left."""
    rows = [torch.as_tensor(s) for s in sequences]
    if not rows or any(r.dim() != 1 for r in rows):
        raise ValueError("a list of prompts must hold 1-D token sequences")
    if any(r.dtype.is_floating_point or r.dtype == torch.bool for r in rows):
        raise TypeError("prompts must hold integer token ids")
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for b, r in enumerate(rows):
        if len(r):
            ids[b, T - len(r):], mask[b, T - len(r):] = r, 1
    return ids, mask


def _prepare(model, input_ids, max_new_tokens, temperature, top_p, seed, stop,
             attention_mask=None, max_len=None, use_cache=True):
    """Check everything up front; (ids [B, T], whether the input was 1-D, the step iterator)."""
    if isinstance(input_ids, (list, tuple)):
        if attention_mask is not None:
            raise ValueError("pass attention_mask with a padded tensor, not with a list of prompts")
        input_ids, attention_mask = left_pad(input_ids, model.config.pad_token_id)
    ids, mask, one = model.check_inputs(input_ids, attention_mask)
    if mask is not None:
        if (mask[:, 1:] < mask[:, :-1]).any():
            raise ValueError("generate needs left padding: attention_mask 0s before the 1s of each row")
        if not mask[:, -1].all():
            raise ValueError("every prompt needs at least one token")
        if mask.all():
            mask = None
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    check_sampling(temperature, top_p)
    B, T = ids.shape
    max_len = T + max_new_tokens if max_len is None else max_len
    if T + max_new_tokens > max_len:
        raise ValueError(f"a prompt of {T} tokens (padding included) plus max_new_tokens="
                         f"{max_new_tokens} is longer than max_len={max_len}")
    stop = model.config.eos_token_ids if stop is None else stop
    stop = torch.tensor([int(t) for t in stop], dtype=torch.long, device=ids.device)
    if use_cache:
        run = _cached(model, ids, mask, max_len, temperature, top_p, seed)
    else:
        run = _recomputed(model, ids, mask, temperature, top_p, seed)
    return ids, one, _steps(model, max_new_tokens, *run, stop)


def _cached(model, ids, mask, max_len, temperature, top_p, seed):
    """Prefill into a Decoder (one CUDA graph per step on the GPU), kept on the model for the
    next call with the same batch size, length and sampling."""
    key = (ids.shape[0], max_len, float(temperature), float(top_p), model.device,
           getattr(model, "uses_kernels", None))
    held = getattr(model, "_generate_decoder", None)
    if held is None or held[0] != key or held[1].in_use:
        model._generate_decoder = None  # free the old cache before allocating the new one
        held = model._generate_decoder = (key, Decoder(model, ids.shape[0], max_len,
                                                       temperature=temperature, top_p=top_p))
    decoder = held[1]
    decoder.reset()
    decoder.in_use = True  # until its steps end: a second stream meanwhile gets its own
    if seed is None:
        decoder.generator.seed()
    else:
        decoder.generator.manual_seed(seed)
    return (lambda: decoder.prefill(ids, mask)), decoder.step, decoder


def _recomputed(model, ids, mask, temperature, top_p, seed):
    """Every step recomputes the whole sequence so far (no cache)."""
    generator = torch.Generator(device=ids.device)
    generator.manual_seed(seed) if seed is not None else generator.seed()
    state = {"ids": ids, "mask": mask}

    def logits_next():
        with torch.no_grad():
            logits = model.logits_last(state["ids"], state["mask"], None)
        return sample(logits, temperature, top_p, generator)

    def step(token):
        state["ids"] = torch.cat([state["ids"], token[:, None]], dim=1)
        if state["mask"] is not None:
            state["mask"] = torch.cat([state["mask"], torch.ones_like(token, dtype=torch.bool)[:, None]], dim=1)
        return logits_next()

    return logits_next, step, None


def _steps(model, n, first, step, decoder, stop) -> Iterator[torch.Tensor]:
    pad = model.config.pad_token_id
    token = done = None
    try:
        for i in range(n):
            token = first() if i == 0 else step(token)
            if done is None:
                done = torch.zeros_like(token, dtype=torch.bool)
            token = token.masked_fill(done, pad)
            done |= torch.isin(token, stop)
            yield token
            if bool(done.all()):
                return
    finally:
        if decoder is not None:
            decoder.in_use = False


def stream(model, input_ids, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
           seed: int | None = None, stop: Iterable[int] | None = None, *, attention_mask=None,
           max_len: int | None = None, use_cache: bool = True) -> Iterator[torch.Tensor]:
    """Like generate, but yields the new tokens as they come: one LongTensor [B] per step (the
    first after prefill). All arguments are checked before this returns."""
    return _prepare(model, input_ids, max_new_tokens, temperature, top_p, seed, stop,
                    attention_mask, max_len, use_cache)[2]


def generate(model, input_ids, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
             seed: int | None = None, stop: Iterable[int] | None = None, *, attention_mask=None,
             max_len: int | None = None, use_cache: bool = True) -> torch.Tensor:
    """Generate up to `max_new_tokens` tokens after each prompt.

    input_ids: LongTensor [T] or [B, T] (with attention_mask for left-padded rows), or a list of
    token sequences of different lengths (left-padded here with config.pad_token_id).
    temperature 0 is greedy; otherwise sampling from softmax(logits / temperature) within the
    top_p nucleus, reproducible with `seed` (a torch.Generator on the model's device).
    stop: token ids that end a row (default config.eos_token_ids; the stop token is kept and
    the row is filled with pad_token_id after it); generation ends early once every row stopped.
    max_len: the KV cache's length (default: prompt + max_new_tokens). use_cache=False
    recomputes the whole sequence at every step (same result, slower).

    Returns, as transformers does, the prompt columns (padding included) followed by the new
    tokens: LongTensor [B, T + n] ([T + n] for a 1-D prompt), n <= max_new_tokens.
    """
    ids, one, steps = _prepare(model, input_ids, max_new_tokens, temperature, top_p, seed, stop,
                               attention_mask, max_len, use_cache)
    new = list(steps)
    out = torch.cat([ids, torch.stack(new, dim=1)], dim=1) if new else ids
    return out[0] if one else out
