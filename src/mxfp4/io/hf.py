"""Quantize a Hugging Face model folder shard by shard, and load model folders for evaluation.

`quantize_folder` never holds the whole float model: it builds the model's module tree on
the meta device (to know which tensors are Linear weights), then
  rtn / mse: reads one input shard at a time, quantizes its Linear weights one tensor at a
             time and writes the matching output shard;
  gptq:      loads the non-block weights (embeddings, norms), then one decoder block at a time
             (calibration activations of that block, GPTQ, release), keeping only the 4.25-bit
             results, and finally writes the output shards.
Output formats: "mxfp4" (our checkpoint, see mxfp4.io.checkpoint) or "compressed-tensors".
"""

from __future__ import annotations

import json
import os
import shutil
import time

import torch
from torch import nn

from ..nn.convert import QuantizeSummary, LayerReport, _qsnr, find_blocks, quantize_model, select_modules
from ..nn.embedding import MXEmbedding
from ..nn.linear import MXLinear, quantize_weight
from ..ops import quantize
from ..tensor import atomic_write
from . import compressed_tensors as ct
from .checkpoint import (CONFIG_NAME, FORMAT_VERSION, _assign, build_hf_skeleton, file_digest,
                         module_record, write_json)

FORMATS = ("mxfp4", "compressed-tensors")
INDEX_NAME = "model.safetensors.index.json"


def weight_files(directory: str) -> list[str]:
    """The safetensors files of a model folder; pickle-based weights are refused."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"model folder {directory!r} does not exist")
    index = os.path.join(directory, INDEX_NAME)
    if os.path.isfile(index):
        try:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{index!r} is corrupt: {err}") from err
        return sorted(set(weight_map.values()))
    if os.path.isfile(os.path.join(directory, "model.safetensors")):
        return ["model.safetensors"]
    if any(f.endswith((".bin", ".pt", ".pth")) for f in os.listdir(directory)):
        raise ValueError(f"{directory!r} holds pickle-based weights (.bin/.pt); mxfp4 never loads "
                         "pickle: convert the model to safetensors first")
    raise FileNotFoundError(f"{directory!r} has no model.safetensors or {INDEX_NAME}")


def _open(path: str):
    from safetensors import safe_open

    try:
        return safe_open(path, framework="pt", device="cpu")
    except Exception as err:
        raise ValueError(f"cannot read {path!r}: {err}") from err


def quantize_folder(src: str, dst: str, *, method: str = "rtn", scale_rule: str | None = None,
                    block_size: int = 32, hadamard: bool = False, include=None, exclude=None,
                    embeddings: bool = False, calibration=None, fmt: str = "mxfp4",
                    progress=None) -> QuantizeSummary:
    """Quantize the model folder `src` into `dst`; return the summary (QSNR per layer, bytes)."""
    start = time.perf_counter()
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "compressed-tensors" and (hadamard or embeddings):
        raise ValueError("compressed-tensors cannot hold Hadamard-rotated layers or MXFP4 "
                         "embeddings; use --format mxfp4")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError("the output folder must differ from the input folder")
    files = weight_files(src)
    model = build_hf_skeleton(src)
    tied = _tied_names(model)
    names = {}  # tensor name -> shard file
    for fname in files:
        with _open(os.path.join(src, fname)) as f:
            names.update({k: fname for k in f.keys()})
    if method == "gptq":
        summary = _gptq_into(model, src, names, method, scale_rule, block_size, hadamard,
                             include, exclude, embeddings, calibration, progress)
        targets = {n: m for n, m in model.named_modules() if module_record(m)}
    else:
        summary = QuantizeSummary(method, "mse" if method == "mse" else (scale_rule or "floor"),
                                  hadamard)
        targets, summary.skipped = select_modules(model, include=include, exclude=exclude,
                                                  embeddings=embeddings, block_size=block_size)
    os.makedirs(dst, exist_ok=True)
    records, out_files, weight_map = {}, {}, {}
    total = len(targets)
    for fname in files:
        out = {}
        with _open(os.path.join(src, fname)) as f:
            for key in f.keys():
                owner, _, attr = key.rpartition(".")
                mod = targets.get(owner)
                if mod is None or attr != "weight":
                    out[key] = f.get_tensor(key)
                    continue
                w = f.get_tensor(key)
                new = mod if module_record(mod) else _rtn_module(mod, w, summary.scale_rule,
                                                                 block_size, hadamard)
                records[owner] = module_record(new)
                if records[owner]["kind"] == "linear":
                    records[owner]["bias"] = getattr(mod, "bias", None) is not None
                out[f"{owner}.weight_codes"], out[f"{owner}.weight_scales"] = (
                    new.weight_codes, new.weight_scales)
                if method != "gptq":
                    kind = "embedding" if isinstance(new, MXEmbedding) else "linear"
                    summary.layers.append(LayerReport(owner, kind, tuple(w.shape),
                                                      _qsnr(w, new.weight_mx, new), w.nbytes,
                                                      new.weight_mx.nbytes))
                    if progress:
                        progress(owner, len(summary.layers), total)
        if fmt == "compressed-tensors":
            out = {ct.rename(k, records): v for k, v in out.items()}
        path = os.path.join(dst, fname)
        _save(out, path)
        out_files[fname] = file_digest(path)
        weight_map.update({k: fname for k in out})
        summary.bytes_before += os.path.getsize(os.path.join(src, fname))
        summary.bytes_after += out_files[fname]["bytes"]
    for alias, target in tied.items():  # a head tied to a quantized embedding shares its codes
        owner, target_owner = alias.rpartition(".")[0], target.rpartition(".")[0]
        done = {r.name: r for r in summary.layers}
        if target_owner in done and done[target_owner].kind == "embedding" and owner not in done:
            summary.skipped.pop(owner, None)
            summary.layers.append(LayerReport(owner, "tied", done[target_owner].shape,
                                              done[target_owner].qsnr_db, 0, 0))
    _write_configs(model, src, dst, fmt, records, out_files, weight_map, tied)
    summary.seconds = time.perf_counter() - start
    return summary


def _rtn_module(skeleton: nn.Module, w: torch.Tensor, scale_rule, block_size, hadamard):
    if isinstance(skeleton, nn.Embedding):
        mx = quantize(w, axis=1, block_size=block_size, scale_rule=scale_rule)
        scale = getattr(skeleton, "embed_scale", 1.0)
        return MXEmbedding(mx, skeleton.padding_idx, scale, dtype=w.dtype)
    mx = quantize_weight(w, scale_rule=scale_rule, block_size=block_size, hadamard=hadamard)
    return MXLinear(mx, None, hadamard=hadamard)


def _save(tensors: dict, path: str) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def _tied_names(model: nn.Module) -> dict:
    """{name: first name} for parameters that are one tensor under several names."""
    first, aliases = {}, {}
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.update({name: first[id(p)]} if id(p) in first else {})
        first.setdefault(id(p), name)
    return aliases


def _write_configs(model, src, dst, fmt, records, out_files, weight_map, tied) -> None:
    with open(os.path.join(src, "config.json")) as f:
        hf = json.load(f)
    for name in os.listdir(src):  # tokenizer, generation config, ...
        path = os.path.join(src, name)
        if (os.path.isfile(path) and not name.endswith((".safetensors", ".bin", ".pt", ".pth"))
                and name not in ("config.json", INDEX_NAME, CONFIG_NAME)):
            atomic_write(os.path.join(dst, name), lambda tmp, p=path: shutil.copyfile(p, tmp))
    if len(out_files) > 1:
        ct.write_index(dst, out_files, weight_map=weight_map)
    if fmt == "compressed-tensors":
        ignore = [n for n, m in model.named_modules()
                  if isinstance(m, nn.Linear) and n not in records]
        hf["quantization_config"] = ct.quantization_config(ignore)
        write_json(os.path.join(dst, "config.json"), hf)
        return
    write_json(os.path.join(dst, "config.json"), hf)
    aliases = {a: t for a, t in tied.items() if a not in weight_map}
    for alias, target in list(aliases.items()):
        owner, target_owner = alias.rpartition(".")[0], target.rpartition(".")[0]
        if target_owner in records and records[target_owner]["kind"] == "embedding":
            del aliases[alias]  # an LM head tied to a quantized embedding shares its codes
            records[owner] = {**records[target_owner], "kind": "linear", "bias": False}
            for attr in ("weight_codes", "weight_scales"):
                aliases[f"{owner}.{attr}"] = f"{target_owner}.{attr}"
    write_json(os.path.join(dst, CONFIG_NAME), {
        "format": "mxfp4", "format_version": FORMAT_VERSION, "modules": records,
        "aliases": aliases, "files": out_files, "model_class": type(model).__name__,
        "dtype": str(hf.get("dtype") or hf.get("torch_dtype"))})


# -- GPTQ, one decoder block at a time --------------------------------------------------

def _gptq_into(model, src, names, method, scale_rule, block_size, hadamard, include, exclude,
               embeddings, calibration, progress) -> QuantizeSummary:
    if calibration is None:
        raise ValueError("method 'gptq' needs calibration inputs (--calib TEXT_FILE)")
    targets, _ = select_modules(model, include=include, exclude=exclude, embeddings=embeddings,
                                block_size=block_size)
    found = find_blocks(model, targets)
    if found is None:
        raise ValueError("gptq on a model folder needs a model made of repeated decoder blocks")
    prefix = found[0] + "."

    def load(keys_prefix: str, module: nn.Module) -> None:
        mine = {k: v for k, v in names.items() if k.startswith(keys_prefix)}
        _assign(module, {k[len(keys_prefix):]: t for k, t in _read(src, mine).items()})

    def release(i, block):  # back to meta: keep only the quantized layers' codes
        for mod in block.modules():
            for pname, p in list(mod._parameters.items()):
                if p is not None and not isinstance(mod, MXLinear):
                    mod._parameters[pname] = nn.Parameter(p.to("meta"), requires_grad=False)

    outside = {k: v for k, v in names.items() if not k.startswith(prefix)}
    _assign(model, _read(src, outside))
    summary = quantize_model(model, method=method, scale_rule=scale_rule, block_size=block_size,
                             hadamard=hadamard, include=include, exclude=exclude,
                             embeddings=embeddings, calibration=calibration, progress=progress,
                             on_block_start=lambda i, b: load(f"{prefix}{i}.", b),
                             on_block_end=release)
    summary.bytes_before = summary.bytes_after = 0
    return summary


def _read(src: str, names: dict) -> dict:
    """The tensors `names` ({key: shard file}), opening each shard once."""
    out = {}
    for fname in sorted(set(names.values())):
        with _open(os.path.join(src, fname)) as f:
            out.update({k: f.get_tensor(k) for k, v in names.items() if v == fname})
    return out


# -- loading any model folder -------------------------------------------------------------

def load_model(directory: str, dtype: torch.dtype = torch.float32):
    """(model, kind) for an mxfp4 checkpoint, a compressed-tensors folder or a float HF folder."""
    from .checkpoint import load_quantized

    directory = os.fspath(directory)
    if os.path.isfile(os.path.join(directory, CONFIG_NAME)):
        return load_quantized(directory), "mxfp4"
    weight_files(directory)  # clear errors for missing or pickle-only weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory)
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if method == "compressed-tensors":
        from transformers import CompressedTensorsConfig

        model = AutoModelForCausalLM.from_pretrained(
            directory, dtype=dtype, quantization_config=CompressedTensorsConfig(dequantize=True))
        return model.eval(), "compressed-tensors"
    if method == "mxfp4":  # gpt-oss layout; dequantize=True keeps transformers off the Hub's kernels
        from transformers import Mxfp4Config

        model = AutoModelForCausalLM.from_pretrained(
            directory, dtype=dtype, quantization_config=Mxfp4Config(dequantize=True))
        return model.eval(), "mxfp4-gpt-oss"
    return AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).eval(), "float"
