"""GPT-OSS (gpt-oss-20b, gpt-oss-120b) as one torch module, experts in MXFP4.

embedding -> N x [x + attention(rmsnorm(x)); x + MoE(rmsnorm(x))] -> rmsnorm -> unembedding.
Attention: fused QKV with bias, grouped-query heads, YaRN RoPE (models/rope.py), a learned sink
logit per head in the softmax denominator, a sliding window on the layers the config marks,
output projection with bias. The MoE is mxfp4.nn.MoE: experts stay in the checkpoint's MXFP4
codes and scales (Triton kernels on CUDA, the float32 reference elsewhere); every other weight
is held in the model's dtype, unless quantize_attention="mxfp4" (our extension, not in the
published checkpoints) makes the attention projections (qkv, out) and the unembedding MXFP4 too,
quantized as they load. Norms, RoPE and the softmax are computed in float32.

Weights come by name (models/gpt_oss_weights.py): from a checkpoint, from random numbers,
or from any stream of (name, tensor) pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

import torch
from torch import nn

from ..format import BLOCK_SIZE
from ..nn.moe import MoE
from .gpt_oss_weights import check_quantize_attention, fill, progress_bar, random_tensors
from .flex import flex_attention_with_sinks
from .kv_cache import KVCache, LayerCache
from .rope import Rope, apply_rope

LAYER_TYPES = ("sliding_attention", "full_attention")
_SCORES_BUDGET = 1 << 28  # bytes of float32 attention scores at once; longer inputs go in chunks


@dataclass
class GptOssConfig:
    """The numbers of a GPT-OSS model; the defaults are gpt-oss-120b's."""

    vocab_size: int = 201088
    hidden_size: int = 2880
    num_hidden_layers: int = 36
    num_experts: int = 128
    experts_per_token: int = 4
    intermediate_size: int = 2880
    head_dim: int = 64
    num_attention_heads: int = 64
    num_key_value_heads: int = 8
    sliding_window: int = 128
    layer_types: list[str] | None = None  # None: even layers slide (as the original format has it)
    rope_theta: float = 150000.0
    rope_scaling_factor: float = 32.0
    rope_ntk_alpha: float = 1.0
    rope_ntk_beta: float = 32.0
    initial_context_length: int = 4096
    swiglu_limit: float = 7.0
    swiglu_alpha: float = 1.702
    rms_norm_eps: float = 1e-5
    eos_token_ids: tuple[int, ...] = ()  # generate's default `stop`
    pad_token_id: int = 0  # fills left padding and the tail of rows that stopped early

    def __post_init__(self):
        if self.layer_types is None:
            self.layer_types = [LAYER_TYPES[i % 2] for i in range(self.num_hidden_layers)]
        self.layer_types = list(self.layer_types)
        self.eos_token_ids = tuple(int(t) for t in self.eos_token_ids)
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_experts",
                     "intermediate_size", "head_dim", "num_attention_heads",
                     "num_key_value_heads", "sliding_window", "initial_context_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"GptOssConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        checks = [
            (self.hidden_size % BLOCK_SIZE == 0 and self.intermediate_size % BLOCK_SIZE == 0,
             f"hidden_size and intermediate_size must be multiples of {BLOCK_SIZE} (MXFP4 blocks)"),
            (self.head_dim % 2 == 0, "head_dim must be even (RoPE rotates pairs)"),
            (self.num_attention_heads % self.num_key_value_heads == 0,
             "num_attention_heads must be a multiple of num_key_value_heads"),
            (1 <= self.experts_per_token <= self.num_experts,
             "experts_per_token must be in [1, num_experts]"),
            (len(self.layer_types) == self.num_hidden_layers, "layer_types needs one entry per layer"),
            (set(self.layer_types) <= set(LAYER_TYPES), f"layer_types entries must be in {LAYER_TYPES}"),
            (0 <= self.pad_token_id < self.vocab_size, "pad_token_id must be a token id"),
            (all(0 <= t < self.vocab_size for t in self.eos_token_ids), "eos_token_ids must be token ids"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"GptOssConfig: {message}; got {self}")

    @classmethod
    def from_dict(cls, values: dict) -> "GptOssConfig":
        """The fields of `values` that GptOssConfig has (mxfp4.io.gpt_oss_checkpoint.read_config's
        dict); other keys are ignored. A Hugging Face style `eos_token_id` (int or list) gives
        eos_token_ids; None values keep the defaults."""
        names = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in names and v is not None}
        eos = values.get("eos_token_id")
        if "eos_token_ids" not in kept and eos is not None:
            kept["eos_token_ids"] = (eos,) if isinstance(eos, int) else tuple(eos)
        return cls(**kept)

    @classmethod
    def gpt_oss_120b(cls) -> "GptOssConfig":
        return cls(eos_token_ids=(200002, 200012), pad_token_id=199999)  # <|return|>, <|call|>

    @classmethod
    def gpt_oss_20b(cls) -> "GptOssConfig":
        return cls(num_hidden_layers=24, num_experts=32, eos_token_ids=(200002, 200012),
                   pad_token_id=199999)


def _inference(*tensors) -> bool:
    """Whether the fused CUDA kernels may run: on CUDA, with no gradient to record (they have no
    backward; training, e.g. mxfp4.train's QAT, takes the torch path)."""
    if not tensors[0].is_cuda:
        return False
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, dtype: torch.dtype):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _inference(x, self.weight):  # one fused kernel (kernels/decode_ops.py) instead of seven
            from ..kernels.decode_ops import add_rmsnorm

            return add_rmsnorm(x.reshape(-1, x.shape[-1]), None, self.weight, self.eps)[1].view(x.shape)
        t = x.float()
        t = t * torch.rsqrt(t.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (t * self.weight.float()).to(x.dtype)

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, norm(h)) with h = x + delta: on CUDA one kernel for the residual add and the norm."""
        if _inference(x, delta, self.weight):
            from ..kernels.decode_ops import add_rmsnorm

            h, y = add_rmsnorm(x.reshape(-1, x.shape[-1]), delta.reshape(-1, x.shape[-1]),
                               self.weight, self.eps)
            return h.view(x.shape), y.view(x.shape)
        h = x + delta
        return h, self(h)


def project(layer: nn.Module, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    """residual + layer(x) for a Linear (or MXLinear) layer; on CUDA a bf16 nn.Linear with a few
    rows runs the dense GEMV kernel (kernels/dense_gemv.py: faster than cuBLAS there, the residual
    added before the one rounding)."""
    if isinstance(layer, nn.Linear) and _inference(x, layer.weight, layer.bias):
        from ..kernels.dense_gemv import dense_linear, use_dense_gemv

        rows = x.reshape(-1, x.shape[-1])
        if use_dense_gemv(rows, layer.weight):
            res = None if residual is None else residual.reshape(rows.shape[0], -1)
            y = dense_linear(rows, layer.weight, layer.bias, res, weight_ready=True)
            return y.view(*x.shape[:-1], y.shape[-1])
    y = layer(x)
    return y if residual is None else residual + y


def attention(q, k, v, q_pos, k_pos, sinks, sm_scale: float, window: int) -> torch.Tensor:
    """Grouped-query attention with a sink logit per head, masked by token positions.

    q [B, T, KV, G, D] (G query heads share each KV head); k, v [B, KV, S, D]; q_pos [B, T] and
    k_pos [B, S] (-1: padding or an empty cache slot, seen by nobody). The query at position p
    sees the keys at positions p - window < pos <= p (window 0: all pos <= p). The sink joins
    the softmax denominator only. Returns [B, T, KV * G * D] in v's dtype.
    """
    B, T, KV, G, D = q.shape
    rows = max(1, _SCORES_BUDGET // (4 * B * KV * G * k.shape[2]))
    if T > rows:  # bound the score matrix of long prompts
        return torch.cat([attention(q[:, i:i + rows], k, v, q_pos[:, i:i + rows], k_pos, sinks,
                                    sm_scale, window) for i in range(0, T, rows)], dim=1)
    kp, qp = k_pos[:, None, :], q_pos[:, :, None]
    seen = (kp >= 0) & (kp <= qp)
    if window:
        seen &= kp > qp - window
    scores = torch.einsum("btkgd,bksd->bkgts", q, k).float() * sm_scale
    scores = scores.masked_fill(~seen[:, None, None], float("-inf"))
    sink = sinks.float().view(1, KV, G, 1, 1)
    top = torch.maximum(scores.amax(dim=-1, keepdim=True), sink)  # finite even with no key seen
    if scores.requires_grad:  # training (mxfp4.train): autograd keeps the scores
        probs = (scores - top).exp()
        probs = probs / (probs.sum(dim=-1, keepdim=True) + (sink - top).exp())
    else:  # in place: long prompts hold one score matrix, not three
        probs = scores.sub_(top).exp_()
        probs.div_(probs.sum(dim=-1, keepdim=True) + (sink - top).exp())
    out = torch.einsum("bkgts,bksd->btkgd", probs.to(v.dtype), v)
    return out.reshape(B, T, KV * G * D)


@dataclass
class Step:
    """What every block of one forward call shares: token positions [B, T] (-1: padding), their
    RoPE tables, the cache column the call starts at (a host int, and on the device for decode
    steps a CUDA graph replays), and whether the fused GPU path runs (`kernels`)."""

    pos: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    start: int = 0
    column: torch.Tensor | None = None
    kernels: bool = False
    masks: dict | None = None  # FlexAttention block masks by window, built once per call
    rope: tuple | None = None  # (inv_freq, concentration): the decode kernel computes cos / sin

    @property
    def decode(self) -> bool:
        """One new token per row with a cache: the decode kernels' case."""
        return self.kernels and self.column is not None and self.pos.shape[1] == 1


class AttentionBlock(nn.Module):
    def __init__(self, c: GptOssConfig, layer: int, dtype: torch.dtype):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.window = c.sliding_window if c.layer_types[layer] == "sliding_attention" else 0
        self.sm_scale = 1 / math.sqrt(c.head_dim)
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, dtype)
        self.qkv = nn.Linear(c.hidden_size, (self.heads + 2 * self.kv_heads) * c.head_dim, dtype=dtype)
        self.sinks = nn.Parameter(torch.zeros(self.heads, dtype=dtype))
        self.out = nn.Linear(self.heads * c.head_dim, c.hidden_size, dtype=dtype)

    def forward(self, x, step: Step, cache: LayerCache | None = None,
                pending: torch.Tensor | None = None) -> torch.Tensor:
        """x + attention(norm(x)), where x is first increased by `pending` (the MoE output of
        the block before, added in the norm's kernel)."""
        B, T, _ = x.shape
        D, KV = self.head_dim, self.kv_heads
        if pending is None:
            h = self.norm(x)
        else:
            x, h = self.norm.add(x, pending)
        qkv = project(self.qkv, h)
        if step.decode:  # one fused RoPE + cache write, then attention over the cache
            from ..kernels.decode_attention import decode_attention
            from ..kernels.decode_ops import rope_kv_write

            q = rope_kv_write(qkv.view(B, -1), step.pos.view(B), step.column, *step.rope,
                              cache.k, cache.v, cache.pos, self.heads, KV, D)
            out = decode_attention(q, cache.k, cache.v, cache.pos, step.pos.view(B), step.column,
                                   self.sinks, self.sm_scale, self.window, cache.ring).view(B, 1, -1)
            return project(self.out, out, x)
        q, k, v = qkv.split([self.heads * D, KV * D, KV * D], dim=-1)
        q = apply_rope(q.view(B, T, KV, self.heads // KV, D), step.cos, step.sin)
        k = apply_rope(k.view(B, T, KV, D), step.cos, step.sin).transpose(1, 2)  # [B, KV, T, D], as cached
        v = v.view(B, T, KV, D).transpose(1, 2)
        if step.kernels and (cache is None or step.start == 0):  # keys = the new tokens: Flex
            if cache is not None:
                cache.update(k, v, step.pos, 0)
            out = flex_attention_with_sinks(q, k, v, step, self.sinks, self.sm_scale, self.window)
        else:
            keys, values, key_pos = (k, v, step.pos) if cache is None else cache.update(k, v, step.pos, step.start)
            out = attention(q, keys, values, step.pos, key_pos, self.sinks, self.sm_scale, self.window)
        return project(self.out, out, x)


class MLPBlock(nn.Module):
    def __init__(self, c: GptOssConfig, dtype: torch.dtype):
        super().__init__()
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, dtype)
        self.moe: MoE | None = None  # set by GptOss.from_tensors
        self.backend = "auto"  # MoE.forward's: Triton on CUDA (bf16 intermediates), else reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta(x)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """What the block adds to the residual stream: MoE(norm(x))."""
        return self.moe(self.norm(x), backend=self.backend)


class Block(nn.Module):
    def __init__(self, c: GptOssConfig, layer: int, dtype: torch.dtype):
        super().__init__()
        self.attn = AttentionBlock(c, layer, dtype)
        self.mlp = MLPBlock(c, dtype)

    def forward(self, x, step: Step, cache: LayerCache | None = None) -> torch.Tensor:
        return self.mlp(self.attn(x, step, cache))


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class GptOss(nn.Module):
    """GPT-OSS with MXFP4 experts. Build it with from_pretrained, from_config or from_tensors
    (the constructor alone gives an empty skeleton on the meta device)."""

    def __init__(self, config: GptOssConfig, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        c = self.config = config
        self.dtype = dtype
        self.quantize_attention: str | None = None  # from_tensors records its option
        self.kernels: bool | str = "auto"  # see uses_kernels
        with torch.device("meta"):
            self.embedding = nn.Embedding(c.vocab_size, c.hidden_size, dtype=dtype)
            self.blocks = nn.ModuleList(Block(c, i, dtype) for i in range(c.num_hidden_layers))
            self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, dtype)
            self.unembedding = nn.Linear(c.hidden_size, c.vocab_size, bias=False, dtype=dtype)
        self.rope = Rope(c.head_dim, c.rope_theta, c.rope_scaling_factor, c.rope_ntk_alpha,
                         c.rope_ntk_beta, c.initial_context_length)
        self.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def _apply(self, fn, recurse=True):
        self._generate_decoder = None  # its captured graph points at the old tensors
        return super()._apply(fn, recurse)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if assign:  # new tensors: a captured graph would read the old ones
            self._generate_decoder = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, *, device=None, dtype: torch.dtype = torch.bfloat16,
                        progress=True, quantize_attention: str | None = None) -> "GptOss":
        """Load a gpt-oss checkpoint folder (Hugging Face or original layout), streaming each
        tensor onto `device` (default: cuda when present) as it is read.

        progress: True for a progress bar on stderr, a callable `progress(done, total)`, or
        False / None for nothing.
        quantize_attention: None keeps the attention projections and the unembedding in `dtype`;
        "mxfp4" quantizes their weights to MXFP4 as each arrives (mxfp4.nn.MXLinear, round to
        nearest with the `even` scale rule; biases stay in `dtype`). gpt-oss-120b's bytes per
        decoded token drop from about 5.0 GB to about 2.7 GB; the accuracy cost is measured
        on Gemma 3 270M in docs/accuracy.md ("Attention in MXFP4 too")."""
        from ..io.gpt_oss_checkpoint import iter_tensors, read_config

        check_quantize_attention(quantize_attention)  # before any reading
        device = device or _default_device()
        values = read_config(path)
        config = GptOssConfig.from_dict(values)

        def load(report):
            return cls.from_tensors(config, iter_tensors(path, values, device=device, progress=report),
                                    device=device, dtype=dtype, quantize_attention=quantize_attention)

        if progress is not True:
            return load(progress or None)
        with progress_bar(f"loading {path}") as report:
            return load(report)

    @classmethod
    def from_config(cls, config: GptOssConfig, *, device=None, dtype: torch.dtype = torch.bfloat16,
                    seed: int = 0, quantize_attention: str | None = None) -> "GptOss":
        """Random weights of any shape; experts are MXFP4 quantizations of random floats.
        The same seed gives the same model on the same kind of device. quantize_attention: as
        in from_pretrained (the random float weights are drawn, then quantized)."""
        check_quantize_attention(quantize_attention)
        device = device or _default_device()
        return cls.from_tensors(config, random_tensors(config, device, dtype, seed),
                                device=device, dtype=dtype, quantize_attention=quantize_attention)

    @classmethod
    def from_tensors(cls, config: GptOssConfig, tensors: Iterable[tuple[str, torch.Tensor]], *,
                     device=None, dtype: torch.dtype = torch.bfloat16,
                     quantize_attention: str | None = None) -> "GptOss":
        """A model from (name, tensor) pairs, each put in place as it arrives (see
        gpt_oss_weights.fill: every name once, with its shape, or a ValueError naming it).
        quantize_attention: as in from_pretrained."""
        check_quantize_attention(quantize_attention)
        model = cls(config, dtype)
        fill(model, tensors, torch.device(device or _default_device()), quantize_attention)
        model.quantize_attention = quantize_attention
        return model

    def save_pretrained(self, directory, *, overwrite: bool = False,
                        max_shard_bytes: int = 4 << 30) -> str:
        """Write the model in the original gpt-oss layout (config.json + safetensors shards),
        which from_pretrained reads back (with quantize_attention="mxfp4" when the attention
        projections are MXFP4); an existing non-empty folder needs overwrite=True. Returns the
        folder. Details: models/gpt_oss_save.py."""
        from .gpt_oss_save import save_gpt_oss

        return save_gpt_oss(self, directory, overwrite=overwrite, max_shard_bytes=max_shard_bytes)

    # -- running -----------------------------------------------------------------------------
    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache for `batch` rows of at most `max_len` tokens (padding included)."""
        return KVCache(self.config, batch, max_len, device=self.device, dtype=self.dtype)

    def decoder(self, batch: int, max_len: int, *, temperature: float = 0.0, top_p: float = 1.0,
                seed: int | None = None, graphs: bool | None = None):
        """A Decoder (models/decoder.py) with its own cache: prefill(ids), then step(tokens),
        each step one CUDA graph replay on the GPU (graphs=None: on CUDA)."""
        from .decoder import Decoder

        return Decoder(self, batch, max_len, temperature=temperature, top_p=top_p, seed=seed,
                       graphs=graphs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """input_ids [T] or [B, T] -> logits [T, V] or [B, T, V] in the model's dtype.

        attention_mask (same shape, 1 = token, 0 = padding): padding is skipped, and positions
        count real tokens only, so each row gives the logits it would give alone (the logits at
        padding are meaningless). With a `cache`, the tokens continue the cached ones (prefill,
        then one column per decode step); padding is then allowed on the left of the first call
        only. Without a cache the whole input is computed from scratch.
        """
        ids, mask, one = self.check_inputs(input_ids, attention_mask, cache)
        logits = self.unembedding(self.norm(self.hidden(ids, mask, cache)))
        return logits[0] if one else logits

    @property
    def uses_kernels(self) -> bool:
        """Whether forward runs the fused GPU path (decode attention over the cache, FlexAttention
        prefill): `self.kernels` True or False, or "auto" (the default): on CUDA."""
        return self.kernels is True or (self.kernels == "auto" and self.device.type == "cuda")

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
               cache: KVCache | None = None) -> torch.Tensor:
        """The residual stream after the last block, [B, T, H] (no input checks). With a cache
        and no mask, nothing here reads a device value on the host, so a decode step can be
        captured in a CUDA graph (models/decoder.py)."""
        B, T = ids.shape
        seen = cache.seen[:, None] if cache is not None else 0
        if mask is None and T == 1 and cache is not None:
            pos = cache.seen[:, None]  # a decode step: no kernel (read before seen advances)
        elif mask is None:
            pos = (seen + torch.arange(T, device=ids.device)).expand(B, T)
        else:
            pos = (seen + mask.cumsum(dim=1) - 1).masked_fill(~mask, -1)
            ids = ids.masked_fill(~mask, 0)
        step = Step(pos, None, None, start=cache.length if cache is not None else 0,
                    column=cache.column if cache is not None else None, kernels=self.uses_kernels)
        if step.decode:
            step.rope = self.rope.tables(ids.device)
        else:
            step.cos, step.sin = self.rope.cos_sin(pos)
        x, pending = self.embedding(ids), None
        for i, block in enumerate(self.blocks):  # Block.forward, with each MoE's residual add
            # deferred into the next norm (one kernel on CUDA)
            x = block.attn(x, step, None if cache is None else cache.layers[i], pending)
            pending = block.mlp.delta(x)
        x = x + pending
        if cache is not None:
            cache.length += T
            cache.column += T
            cache.seen += T if mask is None else mask.sum(dim=1)
        return x

    def logits_last(self, ids, mask=None, cache=None) -> torch.Tensor:
        """Logits [B, V] of the last column only (what decoding needs; no input checks)."""
        return project(self.unembedding, self.norm(self.hidden(ids, mask, cache)[:, -1]))

    def check_inputs(self, input_ids, attention_mask=None, cache=None):
        """(ids [B, T] long on the model's device, mask [B, T] bool or None, whether the input
        was 1-D), or a clear error for a wrong type, dtype or rank, ids outside the vocabulary,
        a bad mask, or an input that does not fit the cache."""
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.LongTensor of token ids, "
                            f"got {type(input_ids).__name__}")
        dtype = input_ids.dtype
        if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
            raise TypeError(f"input_ids must be an integer tensor of token ids (torch.long), got {dtype}")
        if input_ids.dim() not in (1, 2) or input_ids.numel() == 0:
            raise ValueError(f"input_ids must be [T] or [B, T] with T >= 1, "
                             f"got shape {tuple(input_ids.shape)}")
        one = input_ids.dim() == 1
        ids = input_ids.to(self.device, torch.long).reshape(-1, input_ids.shape[-1])
        mask = None
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
                got = getattr(attention_mask, "shape", type(attention_mask).__name__)
                raise ValueError(f"attention_mask must be a tensor of input_ids' shape "
                                 f"{tuple(input_ids.shape)}, got {got}")
            mask = attention_mask.to(self.device).reshape(ids.shape)
            if not ((mask == 0) | (mask == 1)).all():
                raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
            mask = mask.bool()
        real = ids if mask is None else ids[mask]
        bad = (real < 0) | (real >= self.config.vocab_size)
        if bad.any():
            raise ValueError(f"input_ids holds {int(real[bad][0])}, outside the vocabulary "
                             f"[0, {self.config.vocab_size})")
        if cache is not None:
            B, T = ids.shape
            if cache.batch != B:
                raise ValueError(f"the cache holds {cache.batch} rows, input_ids has {B}")
            if cache.length + T > cache.max_len:
                raise ValueError(f"input of {T} tokens after {cache.length} cached ones is longer "
                                 f"than the cache (max_len {cache.max_len})")
            right_padded = mask is not None and bool((mask[:, 1:] < mask[:, :-1]).any())
            if mask is not None and not mask.all() and (cache.length > 0 or right_padded):
                raise ValueError("with a cache, padding must be on the left of the first call only")
        return ids, mask, one

    def generate(self, input_ids, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, stop: Iterable[int] | None = None, *, attention_mask=None,
                 max_len: int | None = None, use_cache: bool = True) -> torch.Tensor:
        """Prefill, then decode up to max_new_tokens tokens with a KV cache.

        Returns the prompt columns followed by the new tokens, LongTensor [B, T + n] ([T + n]
        for a 1-D prompt). Prompts of different lengths: a list of sequences, or a left-padded
        tensor with attention_mask. Details: mxfp4.models.generation.generate.
        """
        from .generation import generate

        return generate(self, input_ids, max_new_tokens, temperature, top_p, seed, stop,
                        attention_mask=attention_mask, max_len=max_len, use_cache=use_cache)

    def stream(self, input_ids, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
               seed: int | None = None, stop: Iterable[int] | None = None, *, attention_mask=None,
               max_len: int | None = None, use_cache: bool = True) -> Iterator[torch.Tensor]:
        """generate, one step at a time: yields a LongTensor [B] of new tokens per step (the
        first right after prefill), for callers that print as tokens come."""
        from .generation import stream

        return stream(self, input_ids, max_new_tokens, temperature, top_p, seed, stop,
                      attention_mask=attention_mask, max_len=max_len, use_cache=use_cache)
