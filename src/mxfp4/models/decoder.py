"""Decoding with a fixed batch: prefill once, then one token per row per step, each step a single
CUDA graph replay on the GPU.

The graph holds the whole step: embedding, every block (attention over the KV cache, MoE),
the final norm, the unembedding and the choice of the next token (argmax, or temperature /
top-p sampling). Its inputs and outputs are static tensors, and the cache's column and
positions advance on the device, so a step needs no host synchronisation; the host only keeps
a mirror of the cache length (no device value is read). Sampling draws its uniform noise
outside the graph (one kernel, from the decoder's generator), so that a seed reproduces a run.

On other devices (or with graphs=False) the same step runs eagerly. The decoder works with any
model that has `config`, `new_cache`, `check_inputs` and `logits_last` (see GptOss).
"""

from __future__ import annotations

import torch

from .sampling import check_sampling, choose


class Decoder:
    """A KV cache for `batch` rows of at most `max_len` columns, and the step that extends it.

    prefill(ids, attention_mask) -> first new tokens [B]; step(tokens [B]) -> next tokens [B].
    reset() empties the cache for a new batch of prompts (the captured graph is kept).
    """

    def __init__(self, model, batch: int, max_len: int, *, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, graphs: bool | None = None):
        check_sampling(temperature, top_p)
        self.model, self.temperature, self.top_p = model, float(temperature), float(top_p)
        self.cache = model.new_cache(batch, max_len)
        device = self.cache.seen.device
        # only the fused path keeps the cache column on the device; the reference path's
        # host-side column would be frozen into a graph
        capturable = device.type == "cuda" and getattr(model, "uses_kernels", False)
        self.graphs = capturable if graphs is None else bool(graphs)
        if self.graphs and not capturable:
            raise ValueError(f"CUDA graphs need a CUDA model on its fused path (model.kernels), "
                             f"this one is on {device} with kernels={getattr(model, 'kernels', None)!r}")
        self.generator = torch.Generator(device=device)
        if seed is not None:
            self.generator.manual_seed(seed)
        self._tokens = torch.zeros(batch, dtype=torch.long, device=device)
        vocab = model.config.vocab_size
        self._noise = torch.empty(batch, vocab, device=device) if self.temperature else None
        self._graph = None
        self._out = None
        self.in_use = False  # generate's: a decoder it keeps is busy while a stream runs

    @property
    def batch(self) -> int:
        return self.cache.batch

    def reset(self) -> None:
        self.cache.reset()

    def _choose(self, logits: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return choose(logits, self.temperature, self.top_p, noise)

    def _draw(self) -> torch.Tensor | None:
        if self._noise is None:
            return None
        return self._noise.uniform_(generator=self.generator)

    def prefill(self, input_ids, attention_mask=None) -> torch.Tensor:
        """Read the prompts (ids [B, T], left padding marked 0 in attention_mask) into the empty
        cache; returns each row's first new token [B]."""
        if self.cache.length:
            raise ValueError("prefill needs an empty cache: call reset() first")
        ids, mask, _ = self.model.check_inputs(input_ids, attention_mask, self.cache)
        if ids.shape[0] != self.batch:
            raise ValueError(f"the decoder holds {self.batch} rows, the prompt has {ids.shape[0]}")
        if mask is not None and bool(mask.all()):
            mask = None
        with torch.no_grad():
            return self._choose(self.model.logits_last(ids, mask, self.cache), self._draw())

    def _run(self) -> torch.Tensor:
        logits = self.model.logits_last(self._tokens[:, None], None, self.cache)
        return self._choose(logits, self._noise)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (LongTensor [B] on the model's device); returns the next [B]."""
        if not isinstance(tokens, torch.Tensor) or tokens.shape != (self.batch,) or tokens.dtype != torch.long:
            raise ValueError(f"step needs a LongTensor of shape ({self.batch},), got "
                             f"{getattr(tokens, 'dtype', type(tokens).__name__)} "
                             f"{tuple(getattr(tokens, 'shape', ()))}")
        if self.cache.length >= self.cache.max_len:
            raise ValueError(f"the cache is full ({self.cache.max_len} columns)")
        self._tokens.copy_(tokens)
        self._draw()
        with torch.no_grad():
            if not self.graphs:
                return self._run()
            if self._graph is None:
                return self._capture()
            self._graph.replay()
        self.cache.length += 1  # the graph advanced the device copy
        return self._out.clone()

    def _capture(self) -> torch.Tensor:
        """Run the first step eagerly on a side stream (compiles every kernel, and is a real step),
        then capture the next one without running it."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            first = self._run()
        torch.cuda.current_stream().wait_stream(side)
        length = self.cache.length
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._out = self._run()
        self.cache.length = length  # capturing ran nothing on the device
        self._graph = graph
        return first
