"""MXEmbedding: an embedding table stored as MXFP4 rows, dequantizing only looked-up rows."""

from __future__ import annotations

import torch
from torch import nn

from ..codec import dequantize_blocks
from ..format import BLOCK_SIZE
from ..ops import quantize
from ..tensor import MXTensor


class MXEmbedding(nn.Module):
    """Lookup into a [num_embeddings, embedding_dim] table quantized along embedding_dim.

    Each row is its own set of blocks, so a lookup gathers the rows' codes and scales and
    decodes just those. `embed_scale` (a non-persistent buffer, 1 unless the source module had
    one, as Gemma's scaled embeddings do) multiplies the output; its dtype is the output dtype,
    so `model.to(torch.bfloat16)` changes both like for nn.Embedding.
    """

    def __init__(self, weight: MXTensor, padding_idx: int | None = None,
                 embed_scale: torch.Tensor | float = 1.0, dtype: torch.dtype = torch.float32):
        super().__init__()
        if not isinstance(weight, MXTensor):
            raise TypeError(f"MXEmbedding needs an MXTensor weight, got {type(weight).__name__}")
        if len(weight.shape) != 2 or weight.axis != 1:
            raise ValueError(f"MXEmbedding needs a 2-D table quantized along axis 1, got shape "
                             f"{tuple(weight.shape)} axis {weight.axis}")
        self.num_embeddings, self.embedding_dim = weight.shape
        self.block_size, self.scale_rule = weight.block_size, weight.scale_rule
        self.padding_idx = padding_idx
        self.register_buffer("weight_codes", weight.codes)
        self.register_buffer("weight_scales", weight.scales)
        scale = torch.as_tensor(embed_scale, dtype=dtype).detach().clone().reshape(())
        self.register_buffer("embed_scale", scale, persistent=False)

    @classmethod
    def from_embedding(cls, emb: nn.Embedding, *, scale_rule: str = "floor",
                       block_size: int = BLOCK_SIZE) -> "MXEmbedding":
        if not isinstance(emb, nn.Embedding):
            raise TypeError(f"from_embedding expects an nn.Embedding, got {type(emb).__name__}")
        if emb.max_norm is not None or emb.scale_grad_by_freq or emb.sparse:
            raise ValueError("MXEmbedding does not support max_norm, scale_grad_by_freq or sparse")
        w = emb.weight.detach()
        if not torch.isfinite(w).all():
            raise ValueError("the embedding table contains NaN or Inf")
        mx = quantize(w, axis=1, block_size=block_size, scale_rule=scale_rule)
        scale = getattr(emb, "embed_scale", 1.0)  # Gemma's ScaledWordEmbedding multiplies by it
        return cls(mx, emb.padding_idx, scale, dtype=w.dtype)

    @property
    def weight_mx(self) -> MXTensor:
        return MXTensor(self.weight_codes, self.weight_scales,
                        (self.num_embeddings, self.embedding_dim), axis=1,
                        block_size=self.block_size, scale_rule=self.scale_rule)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"MXEmbedding expects integer ids, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_embeddings):
            raise IndexError(f"ids must lie in [0, {self.num_embeddings}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        codes, scales = self.weight_codes[ids], self.weight_scales[ids]
        rows = dequantize_blocks(codes, scales, torch.Size((*ids.shape, self.embedding_dim)),
                                 ids.dim(), self.block_size, torch.float32)
        return (rows * self.embed_scale.float()).to(self.embed_scale.dtype)

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, block_size={self.block_size}, "
                f"scale_rule={self.scale_rule!r}")
