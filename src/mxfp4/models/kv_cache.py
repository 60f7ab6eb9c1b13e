"""Key/value cache for decoding: preallocated once, a ring buffer on sliding-window layers.

Every batch row advances by the same number of columns per step (prompts are left-padded, see
GptOss.generate). Each slot remembers the position of the token it holds, -1 for an empty slot
or a padding column, so that attention masks by position alone: no separate padding mask,
and a ring buffer needs no unrolling.
"""

from __future__ import annotations

import torch


class LayerCache:
    """One layer's keys and values [B, kv_heads, size, head_dim] and their positions [B, size].
    (Heads before slots: a filled prefix is then a view that attention reads without a copy.)"""

    def __init__(self, batch: int, size: int, kv_heads: int, head_dim: int, *, ring: bool,
                 device, dtype):
        self.size, self.ring = size, ring
        self.k = torch.zeros(batch, kv_heads, size, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.pos = torch.full((batch, size), -1, dtype=torch.long, device=device)

    def update(self, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, start: int):
        """Add T new columns (k, v [B, kv, T, D], pos [B, T]) at column `start`; return the keys,
        values and positions the new queries attend over."""
        if not self.ring:  # slot = column: write first, then read the filled prefix
            self._write(k, v, pos, start)
            end = start + k.shape[2]
            return self.k[:, :, :end], self.v[:, :, :end], self.pos[:, :end]
        # A ring holds the last `size` columns. New queries may need old columns that their own
        # writes would overwrite, so they read the ring as it was, plus the new columns.
        keys = torch.cat([self.k, k], dim=2)
        values = torch.cat([self.v, v], dim=2)
        positions = torch.cat([self.pos, pos], dim=1)
        T = k.shape[2]
        keep = min(T, self.size)
        self._write(k[:, :, -keep:], v[:, :, -keep:], pos[:, -keep:], start + T - keep)
        return keys, values, positions

    def write_at(self, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, column: torch.Tensor) -> None:
        """Write one new column (k, v [B, kv, 1, D], pos [B, 1]) at the device-held `column`
        (a 1-element long tensor): no host value, so a CUDA graph can replay it as the cache
        grows."""
        slot = column % self.size
        self.k.index_copy_(2, slot, k)
        self.v.index_copy_(2, slot, v)
        self.pos.index_copy_(1, slot, pos)

    def _write(self, k, v, pos, start: int) -> None:
        slots = torch.arange(start, start + k.shape[2], device=k.device) % self.size
        self.k[:, :, slots] = k
        self.v[:, :, slots] = v
        self.pos[:, slots] = pos


class KVCache:
    """The cache of a whole model for `batch` rows of at most `max_len` columns.

    length: columns written so far (the same for every row), also held on the device as
    `column` (1-element long tensor) for CUDA-graph replays, which advance it there;
    seen: [B] real (non-padding) tokens so far per row, the position of the next token.
    """

    def __init__(self, config, batch: int, max_len: int, *, device, dtype):
        if batch < 1 or max_len < 1:
            raise ValueError(f"a cache needs batch >= 1 and max_len >= 1, got {batch} and {max_len}")
        self.batch, self.max_len, self.length = batch, max_len, 0
        self.seen = torch.zeros(batch, dtype=torch.long, device=device)
        self.column = torch.zeros(1, dtype=torch.long, device=device)
        self.layers = []
        for kind in config.layer_types:
            sliding = kind == "sliding_attention" and config.sliding_window < max_len
            size = config.sliding_window if sliding else max_len
            self.layers.append(LayerCache(batch, size, config.num_key_value_heads, config.head_dim,
                                          ring=sliding, device=device, dtype=dtype))

    def reset(self) -> None:
        """Empty the cache in place (a captured CUDA graph keeps pointing at the same memory)."""
        self.length = 0
        self.seen.zero_()
        self.column.zero_()
        for layer in self.layers:
            layer.pos.fill_(-1)

    def fill_random(self, context: int, seed: int = 0) -> None:
        """Pretend every row has read `context` tokens: random keys and values at positions
        0 .. context-1 (for benchmarks that time decoding at a given context without a prefill)."""
        if not 0 <= context <= self.max_len:
            raise ValueError(f"context must be in [0, max_len={self.max_len}], got {context}")
        self.reset()
        device = self.seen.device
        gen = torch.Generator(device=device).manual_seed(seed)
        for layer in self.layers:
            layer.k.normal_(generator=gen)
            layer.v.normal_(generator=gen)
            last = torch.arange(max(0, context - layer.size), context, device=device)
            layer.pos[:, last % layer.size] = last
        self.length = context
        self.seen.fill_(context)
        self.column.fill_(context)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for c in self.layers for t in (c.k, c.v, c.pos))
