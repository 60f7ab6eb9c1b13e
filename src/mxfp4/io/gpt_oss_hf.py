"""Export MoE expert weights in the gpt-oss Hugging Face layout (what transformers' GptOss loads).

Per MoE layer `p` (e.g. model.layers.3.mlp), next to the float router p.router.weight/.bias:
  p.experts.gate_up_proj_blocks  uint8 [E, 2I, H/32, 16]   p.experts.gate_up_proj_scales [E, 2I, H/32]
  p.experts.down_proj_blocks     uint8 [E, H, I/32, 16]    p.experts.down_proj_scales    [E, H, I/32]
  p.experts.gate_up_proj_bias / down_proj_bias (float)
and config.json gets quantization_config {"quant_method": "mxfp4", "modules_to_not_convert": [...]}.
The blocks are our MXTensor bytes (element 2i in the low nibble, E8M0 scales) viewed as
[..., K/32, 16]; the layout names come from mxfp4.io.gpt_oss. The rest of the model stays in
its float dtype: transformers' mxfp4 loader quantizes experts only.

Sources of expert weights: our mxfp4.nn.MoE modules (written as they are), or float
transformers GptOssExperts modules, whose parameters are stored [E, in, out] and are
quantized here along `in` with the given scale rule.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from ..ops import quantize
from ..tensor import MXTensor
from .checkpoint import module_record, split_aliases, write_json, write_shards
from .compressed_tensors import write_index
from .gpt_oss import NAMINGS

_HF = {field: pattern.replace("model.layers.{n}.mlp", "{p}") for field, pattern in NAMINGS["hf"].items()}


def _is_hf_experts(module: nn.Module) -> bool:
    params = dict(module.named_parameters(recurse=False))
    return all(n in params and params[n].dim() == 3 for n in ("gate_up_proj", "down_proj"))


def _blocks(w: MXTensor) -> tuple[torch.Tensor, torch.Tensor]:
    return w.to_gpt_oss()


def expert_tensors(module: nn.Module, prefix: str, scale_rule: str) -> dict[str, torch.Tensor]:
    """The gpt-oss HF tensors of one MoE layer: our MoE at `prefix`, or HF experts at `prefix`."""
    from ..nn.moe import MoE

    if isinstance(module, MoE):  # prefix is the mlp: router and experts both live here
        names = {f: pattern.format(p=prefix) for f, pattern in _HF.items()}
        (w1b, w1s), (w2b, w2s) = _blocks(module.w1), _blocks(module.w2)
        values = dict(router_weight=module.router_weight, router_bias=module.router_bias,
                      w1_blocks=w1b, w1_scales=w1s, b1=module.b1, w2_blocks=w2b, w2_scales=w2s,
                      b2=module.b2)
        return {names[f]: v for f, v in values.items()}
    out = {}
    for pname in ("gate_up_proj", "down_proj"):
        w = getattr(module, pname).detach()  # [E, in, out] in transformers' GptOssExperts
        if not torch.isfinite(w).all():
            raise ValueError(f"{prefix}.{pname} contains NaN or Inf")
        if w.shape[1] % 32:
            raise ValueError(f"{prefix}.{pname}: input size {w.shape[1]} is not a multiple of 32")
        mx = quantize(w.transpose(1, 2).contiguous(), axis=2, scale_rule=scale_rule)
        blocks, scales = _blocks(mx)
        out[f"{prefix}.{pname}_blocks"], out[f"{prefix}.{pname}_scales"] = blocks, scales
        out[f"{prefix}.{pname}_bias"] = getattr(module, f"{pname}_bias").detach()
    return out


def save_gpt_oss_hf(model: nn.Module, directory: str | os.PathLike, *, scale_rule: str = "floor",
                    max_shard_bytes: int = 4 << 30, overwrite: bool = False) -> str:
    """Write a Hugging Face model folder whose MoE experts are MXFP4 in the gpt-oss layout.

    Written beside `directory` and moved into place when complete; a non-empty `directory` is
    refused unless `overwrite`.
    """
    from ..nn.moe import MoE
    from .output_folder import staged_folder

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_json_string"):
        raise ValueError("the gpt-oss Hugging Face layout needs a transformers model config")
    for name, mod in model.named_modules():
        if module_record(mod) is not None:
            raise ValueError(f"{name} is an MXFP4 {module_record(mod)['kind']}: the gpt-oss "
                             "layout stores only MoE experts in MXFP4 (keep other layers float)")
    experts = {n: m for n, m in model.named_modules() if isinstance(m, MoE) or _is_hf_experts(m)}
    if not experts:
        raise ValueError("the model has no MoE experts (mxfp4.nn.MoE or GptOssExperts)")
    tensors, replaced = {}, set()
    for name, mod in experts.items():
        tensors.update(expert_tensors(mod, name, scale_rule))
        replaced.update(f"{name}.{k}" for k in mod.state_dict())
    unique, _ = split_aliases(model.state_dict())
    tensors.update({k: v for k, v in unique.items() if k not in replaced})
    keep = sorted({n for n, m in model.named_modules()
                   if isinstance(m, (nn.Linear, nn.Embedding))})
    hf = json.loads(config.to_json_string())
    hf["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": keep}
    with staged_folder(directory, overwrite=overwrite) as tmp:
        files = write_shards(tensors, tmp, max_shard_bytes)
        write_index(tmp, files, tensors)
        write_json(os.path.join(tmp, "config.json"), hf)
    return os.path.join(os.fspath(directory), "config.json")
