"""Choosing the next token from logits: greedy, temperature, top-p (nucleus)."""

from __future__ import annotations

import torch


def check_sampling(temperature: float, top_p: float) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def choose(logits: torch.Tensor, temperature: float, top_p: float,
           noise: torch.Tensor | None) -> torch.Tensor:
    """logits [B, V] -> token ids [B], drawing with the given uniform noise [B, V] in [0, 1).

    temperature 0: argmax (noise unused). Otherwise softmax(logits / temperature) in float32,
    restricted to the smallest set of most likely tokens whose probability reaches top_p (the
    most likely token always stays), and one draw per row by the exponential race: the token
    with the largest p / E, E = -ln(u) ~ Exp(1), which picks token i with probability p_i.
    No host synchronisation, so a CUDA graph can hold it (the noise is drawn outside).
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(dim=-1) - sorted_p  # probability of the tokens ranked above
        sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    # u = 0 would give E = inf and a score of 0 for every token of a one-token nucleus
    exp_draw = noise.clamp(min=torch.finfo(torch.float32).tiny).log().neg_()
    return (probs / exp_draw).argmax(dim=-1)


def sample(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """logits [B, V] -> token ids [B]: `choose` with uniform noise from `generator`."""
    check_sampling(temperature, top_p)
    noise = None
    if temperature:
        noise = torch.rand(logits.shape, generator=generator, device=logits.device)
    return choose(logits, temperature, top_p, noise)
