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

    def _write(self, k, v, pos, start: int) -> None:
        slots = torch.arange(start, start + k.shape[2], device=k.device) % self.size
        self.k[:, :, slots] = k
        self.v[:, :, slots] = v
        self.pos[:, slots] = pos


class KVCache:
    """The cache of a whole model for `batch` rows of at most `max_len` columns.

    length: columns written so far (the same for every row);
    seen: [B] real (non-padding) tokens so far per row, the position of the next token.
    """

    def __init__(self, config, batch: int, max_len: int, *, device, dtype):
        if batch < 1 or max_len < 1:
            raise ValueError(f"a cache needs batch >= 1 and max_len >= 1, got {batch} and {max_len}")
        self.batch, self.max_len, self.length = batch, max_len, 0
        self.seen = torch.zeros(batch, dtype=torch.long, device=device)
        self.layers = []
        for kind in config.layer_types:
            sliding = kind == "sliding_attention" and config.sliding_window < max_len
            size = config.sliding_window if sliding else max_len
            self.layers.append(LayerCache(batch, size, config.num_key_value_heads, config.head_dim,
                                          ring=sliding, device=device, dtype=dtype))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for c in self.layers for t in (c.k, c.v, c.pos))
