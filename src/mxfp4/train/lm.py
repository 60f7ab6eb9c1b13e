"""A small Llama-style causal LM in plain torch, for training from scratch under a recipe.

RMSNorm, rotary position embeddings, causal scaled-dot-product attention (grouped KV heads
allowed), a SwiGLU MLP, tied or untied embeddings. Module names and the math follow Hugging Face's
LlamaForCausalLM (`model.layers.{i}.self_attn.q_proj`, rotate-half RoPE, RMSNorm in float32), so
`save_hf` writes a folder that transformers, `mxfp4 eval`, `mxfp4 quantize` and `mxfp4 train
qat` read as a Llama model. Every projection is an nn.Linear, so `prepare_qat` and
`apply_recipe` can swap it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LMConfig:
    vocab_size: int = 320
    dim: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 4
    hidden: int = 192  # SwiGLU inner size
    max_seq: int = 512
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "dim", "layers", "heads", "kv_heads", "hidden", "max_seq"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LMConfig.{name} must be a positive int, got {value!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"LMConfig: dim {self.dim} must split into {self.heads} heads of an "
                             f"even size (RoPE rotates pairs)")
        if self.heads % self.kv_heads:
            raise ValueError(f"LMConfig: heads {self.heads} must be a multiple of kv_heads "
                             f"{self.kv_heads}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


# Named sizes. "small" is the from-scratch model of issue 23 (about 26 M parameters in the
# blocks; every Linear size a multiple of 128, so any recipe's block and Hadamard sizes divide).
CONFIGS = {
    "tiny": dict(dim=64, layers=2, heads=4, kv_heads=4, hidden=192, max_seq=512),
    "small": dict(dim=512, layers=8, heads=8, kv_heads=8, hidden=1408, max_seq=1024,
                  tie_embeddings=False),
}


def lm_config(name: str, vocab_size: int, **changes) -> LMConfig:
    """The named config (CONFIGS) for a tokenizer of `vocab_size` tokens. The embedding table is
    rounded up to a multiple of 64 rows (the extra rows are never targets)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}; the configs are: {', '.join(CONFIGS)}")
    rows = -(-int(vocab_size) // 64) * 64
    return LMConfig(**{**CONFIGS[name], "vocab_size": rows, **changes})


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_tables(config: LMConfig, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [n, head_dim] for positions 0..n-1 (rotate-half layout), float32."""
    d = config.head_dim
    inv_freq = 1.0 / config.rope_theta ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)
    angles = torch.outer(torch.arange(n, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), -1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), -1)
    return (x * cos.to(x.dtype)) + (rotated * sin.to(x.dtype))


class Attention(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        c, hd = config, config.head_dim
        self.heads, self.kv_heads, self.head_dim = c.heads, c.kv_heads, hd
        self.q_proj = nn.Linear(c.dim, c.heads * hd, bias=False)
        self.k_proj = nn.Linear(c.dim, c.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(c.dim, c.kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(c.heads * hd, c.dim, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv_heads != self.heads:
            repeat = self.heads // self.kv_heads
            k, v = k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.dim, config.hidden, bias=False)
        self.up_proj = nn.Linear(config.dim, config.hidden, bias=False)
        self.down_proj = nn.Linear(config.hidden, config.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)


class LM(nn.Module):
    """The causal LM: forward(ids [batch, seq]) -> logits [batch, seq, vocab_size]."""

    def __init__(self, config: LMConfig, *, seed: int | None = None):
        super().__init__()
        self.config = config
        self.model = Decoder(config)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Normal(0, 0.02) weights; the projections that write into the residual stream
        (o_proj, down_proj) scaled by 1/sqrt(2·layers), so the stream's variance does not grow
        with depth. `seed` makes the draw reproducible without touching the global RNG."""
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        residual = 0.02 / math.sqrt(2 * self.config.layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 1:
                    p.fill_(1.0)  # RMSNorm weights
                    continue
                std = residual if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                p.copy_(torch.randn(p.shape, generator=gen) * std)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.is_floating_point():
            raise ValueError(f"LM expects token ids [batch, seq], got {tuple(ids.shape)} {ids.dtype}")
        if ids.shape[1] > self.config.max_seq:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than the model's "
                             f"max_seq {self.config.max_seq}")
        x = self.model.embed_tokens(ids)
        cos, sin = rope_tables(self.config, ids.shape[1], ids.device)
        for block in self.model.layers:
            x = block(x, cos, sin)
        return self.lm_head(self.model.norm(x))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def hf_config(config: LMConfig, *, bos_token_id=None, eos_token_id=None):
    """The transformers LlamaConfig computing what LM(config) computes."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.dim, intermediate_size=config.hidden,
        num_hidden_layers=config.layers, num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads, head_dim=config.head_dim,
        max_position_embeddings=config.max_seq, rms_norm_eps=config.norm_eps,
        rope_theta=config.rope_theta, hidden_act="silu", attention_bias=False, mlp_bias=False,
        tie_word_embeddings=config.tie_embeddings, bos_token_id=bos_token_id,
        eos_token_id=eos_token_id, pad_token_id=None, architectures=["LlamaForCausalLM"])


def to_hf(model: LM, **token_ids):
    """A transformers LlamaForCausalLM holding float32 copies of `model`'s weights (RecipeLinear
    layers hold their float weight under the same name, so a model trained under a recipe
    exports too; its float weights are what is exported)."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(hf_config(model.config, **token_ids))
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and model.config.tie_embeddings)]
    if missing or unexpected:
        raise ValueError(f"the LM's weights do not match LlamaForCausalLM: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return hf.eval()


def describe(config: LMConfig) -> dict:
    return asdict(config)
