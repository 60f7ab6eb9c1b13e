"""gpt-oss MoE checkpoint tensors: the original names and the Hugging Face names.

original (openai/gpt-oss):                      Hugging Face (transformers GptOss):
  block.{n}.mlp.gate.weight / .bias               model.layers.{n}.mlp.router.weight / .bias
  block.{n}.mlp.mlp1_weight.blocks / .scales      model.layers.{n}.mlp.experts.gate_up_proj_blocks / _scales
  block.{n}.mlp.mlp1_bias                         model.layers.{n}.mlp.experts.gate_up_proj_bias
  block.{n}.mlp.mlp2_weight.blocks / .scales      model.layers.{n}.mlp.experts.down_proj_blocks / _scales
  block.{n}.mlp.mlp2_bias                         model.layers.{n}.mlp.experts.down_proj_bias

Both store MXFP4 blocks [E, rows, K/32, 16] uint8 and E8M0 scales [E, rows, K/32] uint8
(the same bytes mxfp4.MXTensor uses), W1 rows interleaved gate (even) / linear (odd).

`model_names` extends the table to the whole model under one canonical naming (embedding,
blocks.{n}.attn.*, blocks.{n}.mlp.*, norm, unembedding), which mxfp4.io.gpt_oss_checkpoint
streams from either layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch

from ..codec import FLOAT_DTYPES

FIELDS = ("router_weight", "router_bias", "w1_blocks", "w1_scales", "b1", "w2_blocks", "w2_scales", "b2")

NAMINGS = {
    "gpt-oss": dict(
        router_weight="block.{n}.mlp.gate.weight", router_bias="block.{n}.mlp.gate.bias",
        w1_blocks="block.{n}.mlp.mlp1_weight.blocks", w1_scales="block.{n}.mlp.mlp1_weight.scales",
        b1="block.{n}.mlp.mlp1_bias",
        w2_blocks="block.{n}.mlp.mlp2_weight.blocks", w2_scales="block.{n}.mlp.mlp2_weight.scales",
        b2="block.{n}.mlp.mlp2_bias"),
    "hf": dict(
        router_weight="model.layers.{n}.mlp.router.weight",
        router_bias="model.layers.{n}.mlp.router.bias",
        w1_blocks="model.layers.{n}.mlp.experts.gate_up_proj_blocks",
        w1_scales="model.layers.{n}.mlp.experts.gate_up_proj_scales",
        b1="model.layers.{n}.mlp.experts.gate_up_proj_bias",
        w2_blocks="model.layers.{n}.mlp.experts.down_proj_blocks",
        w2_scales="model.layers.{n}.mlp.experts.down_proj_scales",
        b2="model.layers.{n}.mlp.experts.down_proj_bias"),
}


# The whole model under one canonical naming (what mxfp4.models.GptOss reads), and where each
# canonical tensor comes from in either layout: {canonical: (Hugging Face name(s), original name)}.
# Hugging Face splits gpt-oss's fused QKV projection into q/k/v; the canonical qkv is their rows
# concatenated in that order, as gpt-oss stores it.
MODEL_NAMES = {
    "embedding.weight": (("model.embed_tokens.weight",), "embedding.weight"),
    "norm.weight": (("model.norm.weight",), "norm.scale"),
    "unembedding.weight": (("lm_head.weight",), "unembedding.weight"),
}
LAYER_NAMES = {  # under blocks.{n}. / model.layers.{n}. / block.{n}.
    "attn.norm.weight": (("input_layernorm.weight",), "attn.norm.scale"),
    "attn.qkv.weight": (tuple(f"self_attn.{p}_proj.weight" for p in "qkv"), "attn.qkv.weight"),
    "attn.qkv.bias": (tuple(f"self_attn.{p}_proj.bias" for p in "qkv"), "attn.qkv.bias"),
    "attn.sinks": (("self_attn.sinks",), "attn.sinks"),
    "attn.out.weight": (("self_attn.o_proj.weight",), "attn.out.weight"),
    "attn.out.bias": (("self_attn.o_proj.bias",), "attn.out.bias"),
    "mlp.norm.weight": (("post_attention_layernorm.weight",), "mlp.norm.scale"),
}
MOE_CANONICAL = {  # canonical suffix -> MoELayerTensors field (names from NAMINGS)
    "mlp.router.weight": "router_weight", "mlp.router.bias": "router_bias",
    "mlp.w1.blocks": "w1_blocks", "mlp.w1.scales": "w1_scales", "mlp.w1.bias": "b1",
    "mlp.w2.blocks": "w2_blocks", "mlp.w2.scales": "w2_scales", "mlp.w2.bias": "b2",
}


def model_names(naming: str, layers: int) -> dict[str, tuple[str, ...]]:
    """{canonical name: its checkpoint name(s) in `naming` ("hf" or "gpt-oss")} for `layers` blocks."""
    hf = naming == "hf"
    out = {c: (hf_names if hf else (orig,)) for c, (hf_names, orig) in MODEL_NAMES.items()}
    for n in range(layers):
        prefix = f"model.layers.{n}." if hf else f"block.{n}."
        for c, (hf_names, orig) in LAYER_NAMES.items():
            out[f"blocks.{n}.{c}"] = tuple(prefix + s for s in (hf_names if hf else (orig,)))
        moe = layer_names(naming, n)
        out.update({f"blocks.{n}.{c}": (moe[f],) for c, f in MOE_CANONICAL.items()})
    return out


@dataclass
class MoELayerTensors:
    """One MoE layer's checkpoint tensors, checked against each other."""

    router_weight: torch.Tensor  # [E, H]
    router_bias: torch.Tensor  # [E]
    w1_blocks: torch.Tensor  # [E, 2I, H/32, 16] uint8
    w1_scales: torch.Tensor  # [E, 2I, H/32] uint8
    b1: torch.Tensor  # [E, 2I]
    w2_blocks: torch.Tensor  # [E, H, I/32, 16] uint8
    w2_scales: torch.Tensor  # [E, H, I/32] uint8
    b2: torch.Tensor  # [E, H]

    def to(self, device) -> "MoELayerTensors":
        return MoELayerTensors(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def layer_names(naming: str, layer: int) -> dict[str, str]:
    """Checkpoint name of each field for `layer` in `naming` ("gpt-oss" or "hf")."""
    if naming not in NAMINGS:
        raise ValueError(f"unknown naming {naming!r}; expected one of {sorted(NAMINGS)}")
    if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
        raise ValueError(f"layer must be a non-negative int, got {layer!r}")
    return {f: pattern.format(n=layer) for f, pattern in NAMINGS[naming].items()}


def detect_naming(names, layer: int) -> str:
    """Which naming the tensor names use for `layer`; a clear error when neither or both fit."""
    names = set(names)
    found = {naming: [n for n in layer_names(naming, layer).values() if n in names]
             for naming in NAMINGS}
    hits = [naming for naming, present in found.items() if present]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        sample = sorted(names)[:5]
        raise KeyError(f"no MoE tensors for layer {layer} under the gpt-oss names "
                       f"({layer_names('gpt-oss', layer)['w1_blocks']}, ...) or the Hugging Face names "
                       f"({layer_names('hf', layer)['w1_blocks']}, ...); first names found: {sample}")
    raise ValueError(f"layer {layer} has tensors under both namings: {found}")


def _shape_error(name: str, what: str, want, got) -> ValueError:
    return ValueError(f"{name}: expected {what} {tuple(want)}, got {tuple(got)}")


def check_layer(t: MoELayerTensors, names: dict[str, str]) -> None:
    """Check dtypes and shapes; say which tensor is wrong and what was expected."""
    for f in ("w1_blocks", "w1_scales", "w2_blocks", "w2_scales"):
        if getattr(t, f).dtype != torch.uint8:
            raise TypeError(f"{names[f]}: expected uint8 MXFP4 {'blocks' if 'blocks' in f else 'scales'}, "
                            f"got {getattr(t, f).dtype}")
    for f in ("router_weight", "router_bias", "b1", "b2"):
        if getattr(t, f).dtype not in FLOAT_DTYPES:
            raise TypeError(f"{names[f]}: expected a bfloat16, float16 or float32 tensor, "
                            f"got {getattr(t, f).dtype}")
    if t.w1_blocks.dim() != 4 or t.w1_blocks.shape[-1] != 16:
        raise ValueError(f"{names['w1_blocks']}: expected shape [E, 2I, H/32, 16], got {tuple(t.w1_blocks.shape)}")
    E, n2, hb, _ = t.w1_blocks.shape
    H = hb * 32
    if n2 % 2:
        raise ValueError(f"{names['w1_blocks']}: 2I = {n2} rows must be even (gate, linear interleaved)")
    I = n2 // 2
    want = {"w1_scales": (E, n2, hb), "b1": (E, n2), "w2_blocks": (E, H, I // 32, 16),
            "w2_scales": (E, H, I // 32), "b2": (E, H), "router_weight": (E, H), "router_bias": (E,)}
    if I % 32:
        raise ValueError(f"{names['w1_blocks']}: I = {I} is not a multiple of 32, so "
                         f"{names['w2_blocks']} cannot hold whole blocks of 32")
    for f, shape in want.items():
        got = getattr(t, f).shape
        if tuple(got) != shape:
            raise _shape_error(names[f], f"shape (E={E}, 2I={n2}, H={H} from {names['w1_blocks']})",
                               shape, got)


def moe_layer_tensors(tensors: Mapping[str, torch.Tensor], layer: int) -> MoELayerTensors:
    """Pick and check layer `layer`'s MoE tensors from a checkpoint mapping (either naming)."""
    naming = detect_naming(tensors.keys(), layer)
    names = layer_names(naming, layer)
    missing = [n for n in names.values() if n not in tensors]
    if missing:
        raise KeyError(f"layer {layer} ({naming} names) is missing {missing}")
    t = MoELayerTensors(**{f: tensors[n] for f, n in names.items()})
    check_layer(t, names)
    return t


class SafetensorsTensors(Mapping):
    """A read-only mapping over the tensors of one .safetensors file or a folder of them.

    Tensors are read on access, so picking one layer reads only that layer.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        from safetensors import safe_open

        path = os.fspath(path)
        files = ([os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith(".safetensors")]
                 if os.path.isdir(path) else [path])
        if not files:
            raise FileNotFoundError(f"no .safetensors files in {path!r}")
        self._device = device
        self._where: dict[str, str] = {}
        for file in files:
            try:
                with safe_open(file, framework="pt", device=device) as f:
                    for key in f.keys():
                        self._where[key] = file
            except FileNotFoundError:
                raise
            except Exception as err:  # safetensors raises its own types for corrupt headers
                raise ValueError(f"cannot read safetensors file {file!r}: {err}") from err

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        file = self._where[name]
        try:
            with safe_open(file, framework="pt", device=self._device) as f:
                return f.get_tensor(name)
        except Exception as err:
            raise ValueError(f"cannot read tensor {name!r} from {file!r}: {err}") from err

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def load_moe_layer(path: str | os.PathLike, layer: int, *, experts_per_token: int = 4,
                   device: str = "cpu"):
    """mxfp4.nn.MoE for `layer` of a gpt-oss checkpoint (file or folder), either naming."""
    from ..nn.moe import MoE

    return MoE.from_checkpoint(SafetensorsTensors(path, device=device), layer,
                               experts_per_token=experts_per_token)
