"""GptOss.save_pretrained: a GptOss (loaded, random, or converted from QAT by mxfp4.train.convert)
in the original gpt-oss layout, which
GptOss.from_pretrained and gpt-oss's own code read: config.json + model.safetensors under the
names `block.{i}.attn.qkv.weight`, `block.{i}.mlp.mlp1_weight.blocks`, ... (mxfp4.io.gpt_oss).

The experts are written as their MXFP4 blocks and scales. The layout has no place for MXFP4
attention: MXLinear projections (qkv, out) and the unembedding are written as their dequantized
floats, which GptOss.from_pretrained(..., quantize_attention="mxfp4") turns back into the same
values (re-rounding an MXFP4 block's own values is lossless under the floor and even rules).
So the three are all MXFP4 or all float; a mix is refused.

The model's modules are read here; mxfp4.io writes the tensors (shards, config, the staged
output folder).
"""

from __future__ import annotations

import dataclasses
import os

import torch

from ..io.checkpoint import write_json, write_shards
from ..io.gpt_oss import model_names
from ..io.gpt_oss_checkpoint import NAMING, ORIGINAL_KEYS, canonical_shapes
from ..io.output_folder import staged_folder
from ..nn.linear import MXLinear
from ..nn.moe import MoE

_MOE_FIELDS = {"router.weight": "router_weight", "router.bias": "router_bias", "w1.bias": "b1",
               "w2.bias": "b2"}


def _moe_tensor(moe, name: str, part: str) -> torch.Tensor:
    if not isinstance(moe, MoE):
        raise ValueError(f"{name} is a {type(moe).__name__}, not an mxfp4.nn.MoE: run "
                         f"mxfp4.train.convert(model) first")
    if part in _MOE_FIELDS:
        return getattr(moe, _MOE_FIELDS[part])
    blocks, scales = getattr(moe, part.split(".")[0]).to_gpt_oss()
    return blocks if part.endswith("blocks") else scales


def _tensor(model, canonical: str) -> torch.Tensor:
    parts = canonical.split(".")
    if parts[0] == "blocks" and parts[2] == "mlp" and parts[3] != "norm":
        return _moe_tensor(model.blocks[int(parts[1])].mlp.moe, f"blocks.{parts[1]}.mlp.moe",
                           ".".join(parts[3:]))
    path, attr = canonical.rsplit(".", 1)
    module = model.get_submodule(path)
    if isinstance(module, MXLinear) and attr == "weight":
        if module.hadamard:
            raise ValueError(f"{path} is a Hadamard-rotated MXLinear; the gpt-oss layout cannot "
                             f"hold it (use mxfp4.save_quantized)")
        return module.dequantized_weight(model.dtype)
    if type(module).__name__ == "QATLinear":
        raise ValueError(f"{path} is a QATLinear: run mxfp4.train.convert(model) first")
    return getattr(module, attr)


def save_gpt_oss(model, directory: str | os.PathLike, *, overwrite: bool = False,
                 max_shard_bytes: int = 4 << 30) -> str:
    """Write GptOss `model` to `directory` in the original gpt-oss layout; return the folder.

    Load it with GptOss.from_pretrained(directory, dtype=model.dtype), adding
    quantize_attention="mxfp4" when the model's attention projections are MXLinear. Written
    beside `directory` and moved into place when complete.
    """
    from .gpt_oss import GptOss

    if not isinstance(model, GptOss):
        raise TypeError(f"save_gpt_oss expects an mxfp4.models.GptOss, got {type(model).__name__}")
    c = dataclasses.asdict(model.config)
    L = c["num_hidden_layers"]
    slides = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(L)]
    if c["layer_types"] != slides or c["rms_norm_eps"] != 1e-5:
        raise ValueError("the original gpt-oss layout cannot express this model's layer_types or "
                         "rms_norm_eps (it slides the even layers, eps 1e-5)")
    kinds = {isinstance(model.get_submodule(p), MXLinear) for p in
             ["unembedding"] + [f"blocks.{i}.attn.{n}" for i in range(L) for n in ("qkv", "out")]}
    if len(kinds) > 1:
        raise ValueError("the attention projections and the unembedding must be all MXLinear or "
                         "all float: GptOss loads them with one quantize_attention setting")
    names = {canonical: sources[0] for canonical, sources in model_names(NAMING["original"], L).items()}
    tensors = {names[n]: _tensor(model, n).detach() for n in canonical_shapes(c)}
    with staged_folder(directory, overwrite=overwrite) as tmp:
        write_shards(tensors, tmp, max_shard_bytes)
        write_json(os.path.join(tmp, "config.json"), {k: c[k] for k in ORIGINAL_KEYS})
    return os.fspath(directory)
