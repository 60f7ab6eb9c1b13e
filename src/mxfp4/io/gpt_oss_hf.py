"""Export MoE expert weights in the gpt-oss Hugging Face layout (what transformers' GptOss loads).

Per MoE layer `p` (e.g. model.layers.3.mlp), next to the float router p.router.weight/.bias:
  p.experts.gate_up_proj_blocks  uint8 [E, 2I, H/32, 16]   p.experts.gate_up_proj_scales [E, 2I, H/32]
  p.experts.down_proj_blocks     uint8 [E, H, I/32, 16]    p.experts.down_proj_scales    [E, H, I/32]
  p.experts.gate_up_proj_bias / down_proj_bias (float)
and config.json gets quantization_config {"quant_method": "mxfp4", "modules_to_not_convert": [...]}.
The blocks are our MXTensor bytes (element 2i in the low nibble, E8M0 scales) viewed as
[..., K/32, 16]; the layout names come from mxfp4.io.gpt_oss. The rest of the model stays in
its float dtype: transformers' mxfp4 loader quantizes experts only.

Sources of expert weights: our mxfp4.nn.MoE modules (written as they are), float
transformers GptOssExperts modules (`save_gpt_oss_hf`), or a whole GPT-OSS folder with float
experts, a bf16 fine-tune, streamed shard by shard (`quantize_gpt_oss_folder`, behind
`mxfp4 quantize`). Float experts are stored [E, in, out] and quantized here along `in`.
"""

from __future__ import annotations

import json
import math
import os
import time

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
        mx, _ = quantize_experts(getattr(module, pname).detach(), f"{prefix}.{pname}", scale_rule)
        blocks, scales = _blocks(mx)
        out[f"{prefix}.{pname}_blocks"], out[f"{prefix}.{pname}_scales"] = blocks, scales
        out[f"{prefix}.{pname}_bias"] = getattr(module, f"{pname}_bias").detach()
    return out


def quantize_experts(w: torch.Tensor, name: str, scale_rule: str, device=None,
                     quantize_one=None) -> tuple[MXTensor, float]:
    """(MXTensor [E, out, in] on the CPU, QSNR dB) of float experts `w` [E, in, out] (as
    transformers stores them), blocks of 32 along `in`, one expert at a time on `device`
    (None: w's) so that temporaries stay the size of one expert. `quantize_one(e, W [out, in])`
    gives expert e's MXTensor (default: round to nearest with `scale_rule`)."""
    if not torch.isfinite(w).all():
        raise ValueError(f"{name} contains NaN or Inf")
    E, n_in, n_out = w.shape
    if n_in % 32:
        raise ValueError(f"{name}: input size {n_in} is not a multiple of 32")
    codes = torch.empty(E, n_out, n_in // 2, dtype=torch.uint8)
    scales = torch.empty(E, n_out, n_in // 32, dtype=torch.uint8)
    signal = noise = 0.0
    for e in range(E):
        ref = (w[e] if device is None else w[e].to(device)).t().contiguous()
        mx = quantize_one(e, ref) if quantize_one else quantize(ref, axis=1, scale_rule=scale_rule)
        codes[e], scales[e] = mx.codes.cpu(), mx.scales.cpu()
        ref = ref.to(torch.float64)
        signal += float((ref * ref).sum())
        noise += float(((ref - mx.dequantize(torch.float32).to(torch.float64)) ** 2).sum())
    qsnr = math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal else -math.inf
    return MXTensor(codes, scales, (E, n_out, n_in), axis=2, scale_rule=scale_rule), qsnr


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


# -- bf16 fine-tunes back to the gpt-oss MXFP4 layout -------------------------------------

# modules_to_not_convert as openai/gpt-oss-20b and -120b publish it (and transformers' converter)
NOT_CONVERTED = ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
                 "lm_head"]
_FLOAT_EXPERTS = (".mlp.experts.gate_up_proj", ".mlp.experts.down_proj")


def is_gpt_oss_folder(directory) -> bool:
    """Whether the folder's config.json names model_type gpt_oss."""
    try:
        with open(os.path.join(directory, "config.json")) as f:
            return json.load(f).get("model_type") == "gpt_oss"
    except (OSError, ValueError, AttributeError):
        return False


def quantize_gpt_oss_folder(src, dst, *, method: str = "rtn", scale_rule: str | None = None,
                            block_size: int = 32, hadamard: bool = False, include=None,
                            exclude=None, embeddings: bool = False, calibration=None,
                            fmt: str = "mxfp4", progress=None, overwrite: bool = False,
                            device="cpu", dtype=None):
    """Turn a GPT-OSS Hugging Face folder with float experts (a fine-tune) into the gpt-oss
    MXFP4 layout that transformers and vLLM load; return a mxfp4.nn.convert.QuantizeSummary.

    Each expert tensor gate_up_proj [E, H, 2I] / down_proj [E, I, H] becomes `_blocks` /
    `_scales` (rtn with `scale_rule`, mse, or gptq with `scale_rule` on the `calibration`
    batches of token ids: io/gpt_oss_gptq.py), quantized one expert at a time on `device`;
    every other tensor is copied bit for bit (so a `dtype` is refused), shard by shard, each
    output shard written before the next is read. The options of quantize_folder that the
    gpt-oss layout cannot hold are refused. Written beside `dst`, moved into place when complete.
    """
    from ..nn.convert import LayerReport, QuantizeSummary
    from .checkpoint import write_json
    from .gpt_oss_checkpoint import (load_json, check_shards, check_values, expected_tensors,
                                     open_shard, read_config, shard_files)
    from .hf import _save, check_not_quantized, copy_side_files
    from .output_folder import staged_folder

    from .gpt_oss_gptq import ExpertGPTQ

    if method not in ("rtn", "mse", "gptq"):
        raise ValueError(f"method must be 'rtn', 'mse' or 'gptq' for a GPT-OSS folder, "
                         f"got {method!r}")
    if method == "gptq" and not calibration:
        raise ValueError("method 'gptq' needs calibration inputs (--calib TEXT_FILE)")
    for option, used in (("--hadamard", hadamard), ("--embeddings", embeddings),
                         ("--include", include), ("--exclude", exclude),
                         (f"--format {fmt}", fmt != "mxfp4"), ("block_size", block_size != 32),
                         (f"--dtype {dtype}", dtype is not None)):
        if used:
            raise ValueError(f"{option} does not apply to a GPT-OSS folder: its experts are "
                             "written in the gpt-oss MXFP4 layout, everything else as it is")
    if method == "mse" and scale_rule not in (None, "mse"):
        raise ValueError("--scale-rule is not used by --method mse")
    rule = "mse" if method == "mse" else (scale_rule or "floor")
    src, device = os.fspath(src), torch.device(device)
    check_not_quantized(src)
    config_path = os.path.join(src, "config.json")
    config = read_config(src, layout="hf")
    files, weight_map = shard_files(src, "hf")
    expected = expected_tensors(config, "hf", float_experts=True)
    where = check_shards(files, expected, config_path, weight_map)
    summary = QuantizeSummary(method, rule, False)
    summary.skipped = {m: "kept as stored (gpt-oss layout)" for m in NOT_CONVERTED}
    start, total = time.perf_counter(), 2 * config["num_hidden_layers"]
    gptq = (ExpertGPTQ(config, expected, where, calibration, scale_rule=rule, device=device)
            if method == "gptq" else None)

    def experts(key, f):  # (MXTensor, QSNR dB, report kind, bytes as stored)
        if gptq:
            return gptq.take(key)  # runs the calibration through the layers up to key's
        t = f.get_tensor(key)
        return *quantize_experts(t, key, rule, device), "experts", t.nbytes

    with staged_folder(dst, overwrite=overwrite, inputs=[src]) as tmp:
        out_files, out_map = {}, {}
        for file in files:
            out = {}
            with open_shard(file) as f:
                for key in f.keys():
                    if not key.endswith(_FLOAT_EXPERTS):
                        out[key] = f.get_tensor(key)  # bit for bit
                        check_values(file, key, out[key])  # what GptOss would refuse to load
                        continue
                    mx, qsnr, kind, stored = experts(key, f)
                    out[f"{key}_blocks"], out[f"{key}_scales"] = _blocks(mx)
                    summary.layers.append(LayerReport(key, kind, tuple(mx.shape), qsnr, stored,
                                                      mx.nbytes))
                    if progress:
                        progress(key, len(summary.layers), total)
            fname = os.path.basename(file)
            _save(out, os.path.join(tmp, fname))
            out_files[fname] = {"bytes": os.path.getsize(os.path.join(tmp, fname))}
            out_map.update({k: fname for k in out})
            summary.bytes_before += os.path.getsize(file)
            summary.bytes_after += out_files[fname]["bytes"]
        write_index(tmp, out_files, weight_map=out_map)
        copy_side_files(src, tmp)
        hf = load_json(config_path)
        hf["quantization_config"] = {"quant_method": "mxfp4",
                                     "modules_to_not_convert": NOT_CONVERTED}
        write_json(os.path.join(tmp, "config.json"), hf)
    summary.seconds = time.perf_counter() - start
    return summary
