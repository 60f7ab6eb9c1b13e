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
import math
import os
import re
import shutil
import time

import torch
from torch import nn

from ..nn.convert import (LayerReport, QuantizeSummary, _qsnr, find_blocks, matches,
                          quantize_model, select_modules)
from ..nn.embedding import MXEmbedding
from ..nn.linear import MXLinear, is_conv1d, is_linear, linear_weight, quantize_weight
from ..ops import quantize
from ..tensor import atomic_write
from . import compressed_tensors as ct
from .output_folder import check_output_folder, staged_folder
from .checkpoint import (CONFIG_NAME, FORMAT_VERSION, HF_REFUSAL, _assign, build_hf_skeleton,
                         file_digest, module_record, write_json)

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


def check_not_quantized(directory: str) -> None:
    """Refuse a folder that already holds a quantized model (mxfp4 or a quantization_config)."""
    if os.path.isfile(os.path.join(directory, CONFIG_NAME)):
        raise ValueError(f"{directory!r} is already an mxfp4 checkpoint ({CONFIG_NAME}); "
                         "quantize the float model it came from")
    try:
        with open(os.path.join(directory, "config.json")) as f:
            qc = json.load(f).get("quantization_config")
    except (OSError, ValueError, AttributeError):
        return  # build_hf_skeleton reports a missing or broken config.json
    if qc:
        method = qc.get("quant_method", qc.get("format")) if isinstance(qc, dict) else qc
        raise ValueError(f"{directory!r} is already quantized (quantization_config: {method}); "
                         "quantize the float model it came from")


def check_weights_match(model: nn.Module, directory: str, files: list[str]) -> dict:
    """{tensor name: shard file}, after checking the files' shapes against the model that
    config.json describes. Extra or missing tensors are let through (checkpoints carry buffers
    such as rotary tables, and transformers renames some on load); a shape that differs is not."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    names, wrong = {}, []
    for fname in files:
        with _open(os.path.join(directory, fname)) as f:
            for key in f.keys():
                names[key] = fname
                shape = tuple(f.get_slice(key).get_shape())
                if key in expected and shape != expected[key]:
                    wrong.append(f"{key} has shape {shape}, config.json gives {expected[key]}")
    if wrong:
        raise ValueError(f"config.json of {directory!r} disagrees with its weights "
                         f"({len(wrong)} tensors): " + "; ".join(wrong[:3]))
    if not set(names) & set(expected):
        raise ValueError(f"none of the tensor names in {directory!r} belong to the "
                         f"{type(model).__name__} that its config.json describes")
    return names


def check_patterns(model: nn.Module, include, exclude) -> None:
    """Refuse an --include / --exclude pattern that is not valid or matches no layer."""
    candidates = [n for n, m in model.named_modules() if is_linear(m) or isinstance(m, nn.Embedding)]
    for option, patterns in (("--include", include), ("--exclude", exclude)):
        for p in patterns or ():
            if p.startswith("re:"):
                try:
                    re.compile(p[3:])
                except re.error as err:
                    raise ValueError(f"{option} {p!r} is not a valid regular expression: {err}") from None
            if not any(matches(n, [p]) for n in candidates):
                hint = f" (names look like {candidates[len(candidates) // 2]!r})" if candidates else ""
                raise ValueError(f"{option} {p!r} matches no Linear or Embedding layer of the "
                                 f"model{hint}")


def _open(path: str):
    from safetensors import safe_open

    try:
        return safe_open(path, framework="pt", device="cpu")
    except Exception as err:
        raise ValueError(f"cannot read {path!r}: {err}") from err


def quantize_folder(src: str, dst: str, *, method: str = "rtn", scale_rule: str | None = None,
                    block_size: int = 32, hadamard: bool = False, include=None, exclude=None,
                    embeddings: bool = False, calibration=None, fmt: str = "mxfp4",
                    progress=None, overwrite: bool = False, device="cpu",
                    dtype: torch.dtype | None = None) -> QuantizeSummary:
    """Quantize the model folder `src` into `dst`; return the summary (QSNR per layer, bytes).

    The output is written beside `dst` and moved into place when complete (io.output_folder):
    a non-empty `dst` is refused unless `overwrite`, and kept intact until then. Weights are
    quantized (and GPTQ runs) on `device`; `dtype` converts the tensors kept in float (None:
    as stored). Bad inputs are refused before any work: a quantized input, a config.json that
    disagrees with the weights, patterns that match no layer, nothing to convert.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "compressed-tensors" and (hadamard or embeddings):
        raise ValueError("compressed-tensors cannot hold Hadamard-rotated layers or MXFP4 "
                         "embeddings; use --format mxfp4")
    check_output_folder(dst, overwrite=overwrite, inputs=[src])
    from .gpt_oss_hf import is_gpt_oss_folder, quantize_gpt_oss_folder
    if is_gpt_oss_folder(src):  # a gpt-oss fine-tune goes back to the gpt-oss MXFP4 layout
        return quantize_gpt_oss_folder(
            src, dst, method=method, scale_rule=scale_rule, block_size=block_size,
            hadamard=hadamard, include=include, exclude=exclude, embeddings=embeddings,
            calibration=calibration, fmt=fmt, progress=progress, overwrite=overwrite,
            device=device, dtype=dtype)
    files = weight_files(src)
    check_not_quantized(src)
    model = build_hf_skeleton(src)
    names = check_weights_match(model, src, files)
    check_patterns(model, include, exclude)
    targets, skipped = select_modules(model, include=include, exclude=exclude,
                                      embeddings=embeddings, block_size=block_size)
    if not targets:
        why = "; ".join(f"{n}: {r}" for n, r in list(skipped.items())[:3]) or "no Linear layers"
        raise ValueError(f"nothing to convert in {src!r} ({why})")
    if fmt == "compressed-tensors" and any(is_conv1d(m) for m in targets.values()):
        raise ValueError("compressed-tensors loads Linear layers only, and this model's are "
                         "Conv1D (GPT-2); use --format mxfp4 or --exclude the Conv1D layers")
    with staged_folder(dst, overwrite=overwrite, inputs=[src]) as tmp:
        return _quantize_into(model, files, names, src, tmp, method=method, scale_rule=scale_rule,
                              block_size=block_size, hadamard=hadamard, include=include,
                              exclude=exclude, embeddings=embeddings, calibration=calibration,
                              fmt=fmt, progress=progress, device=torch.device(device), dtype=dtype)


def _quantize_into(model, files, names, src, dst, *, method, scale_rule, block_size, hadamard,
                   include, exclude, embeddings, calibration, fmt, progress, device,
                   dtype) -> QuantizeSummary:
    """The work of quantize_folder, writing into the fresh folder `dst`; names: {tensor: file}."""
    start = time.perf_counter()
    tied = _tied_names(model)
    if method == "gptq":
        summary = _gptq_into(model, src, names, method, scale_rule, block_size, hadamard,
                             include, exclude, embeddings, calibration, progress, device, dtype)
        targets = {n: m for n, m in model.named_modules() if module_record(m)}
    else:
        summary = QuantizeSummary(method, "mse" if method == "mse" else (scale_rule or "floor"),
                                  hadamard)
        targets, summary.skipped = select_modules(model, include=include, exclude=exclude,
                                                  embeddings=embeddings, block_size=block_size)
    records, out_files, weight_map = {}, {}, {}
    total = len(targets)
    for fname in files:
        out = {}
        with _open(os.path.join(src, fname)) as f:
            for key in f.keys():
                owner, _, attr = key.rpartition(".")
                mod = targets.get(owner)
                if mod is None or attr != "weight":
                    out[key] = _as(f.get_tensor(key), dtype=dtype)
                    continue
                w = _finite(f.get_tensor(key), key).to(device)
                if module_record(mod):  # gptq quantized it already
                    new = mod
                else:  # w becomes [out, in] as the new module holds it
                    new, w = _rtn_module(mod, w, summary.scale_rule, block_size, hadamard)
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
    for r in summary.layers:  # what the visualizer shows for a stored layer (no original there)
        if r.name in records:
            records[r.name]["qsnr_db"] = round(r.qsnr_db, 3) if math.isfinite(r.qsnr_db) else None
    _write_configs(model, src, dst, fmt, records, out_files, weight_map, tied, dtype)
    summary.seconds = time.perf_counter() - start
    return summary


def _rtn_module(skeleton: nn.Module, w: torch.Tensor, scale_rule, block_size, hadamard):
    """(quantized module, its float weight) for the meta module `skeleton` and its weight `w`
    read from the file; a Conv1D's [in, out] weight comes back transposed to MXLinear's [out, in]."""
    if isinstance(skeleton, nn.Embedding):
        mx = quantize(w, axis=1, block_size=block_size, scale_rule=scale_rule)
        scale = getattr(skeleton, "embed_scale", 1.0)
        return MXEmbedding(mx, skeleton.padding_idx, scale, dtype=w.dtype), w
    w = linear_weight(skeleton, w)
    mx = quantize_weight(w, scale_rule=scale_rule, block_size=block_size, hadamard=hadamard)
    return MXLinear(mx, None, hadamard=hadamard), w


def _save(tensors: dict, path: str) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def _tied_names(model: nn.Module) -> dict:
    """{name: first name} for parameters that are one tensor under several names."""
    first, aliases = {}, {}
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.update({name: first[id(p)]} if id(p) in first else {})
        first.setdefault(id(p), name)
    return aliases


def copy_side_files(src: str, dst: str) -> None:
    """Copy the files of a model folder that are not its weights or configs (tokenizer, chat
    template, generation config, ...)."""
    for name in os.listdir(src):
        path = os.path.join(src, name)
        if (os.path.isfile(path) and not name.endswith((".safetensors", ".bin", ".pt", ".pth"))
                and name not in ("config.json", INDEX_NAME, CONFIG_NAME)):
            atomic_write(os.path.join(dst, name), lambda tmp, p=path: shutil.copyfile(p, tmp))


def _write_configs(model, src, dst, fmt, records, out_files, weight_map, tied, dtype=None) -> None:
    with open(os.path.join(src, "config.json")) as f:
        hf = json.load(f)
    if dtype is not None:  # the float tensors were written in it
        hf.pop("torch_dtype", None)
        hf["dtype"] = str(dtype).replace("torch.", "")
    copy_side_files(src, dst)
    if len(out_files) > 1:
        ct.write_index(dst, out_files, weight_map=weight_map)
    if fmt == "compressed-tensors":
        ignore = [n for n, m in model.named_modules()
                  if isinstance(m, nn.Linear) and n not in records]
        hf["quantization_config"] = ct.quantization_config(ignore)
        write_json(os.path.join(dst, "config.json"), hf)
        return
    write_json(os.path.join(dst, "config.json"), {**hf, "quantization_config": HF_REFUSAL})
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
               embeddings, calibration, progress, device, dtype) -> QuantizeSummary:
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
        _assign(module, {k[len(keys_prefix):]: t for k, t in _read(src, mine, device, dtype).items()})

    def release(i, block):  # back to meta: keep only the quantized layers' codes
        for mod in block.modules():
            for pname, p in list(mod._parameters.items()):
                if p is not None and not isinstance(mod, MXLinear):
                    mod._parameters[pname] = nn.Parameter(p.to("meta"), requires_grad=False)

    outside = {k: v for k, v in names.items() if not k.startswith(prefix)}
    _assign(model, _read(src, outside, device, dtype))
    for mod in model.modules():  # buffers (rotary tables, ...) were built on the CPU
        for bname, b in list(mod._buffers.items()):
            if b is not None and b.device.type != "meta":
                mod._buffers[bname] = b.to(device)
    calibration = [_as(batch, device) for batch in calibration]
    summary = quantize_model(model, method=method, scale_rule=scale_rule, block_size=block_size,
                             hadamard=hadamard, include=include, exclude=exclude,
                             embeddings=embeddings, calibration=calibration, progress=progress,
                             on_block_start=lambda i, b: load(f"{prefix}{i}.", b),
                             on_block_end=release)
    summary.bytes_before = summary.bytes_after = 0
    return summary


def _read(src: str, names: dict, device="cpu", dtype=None) -> dict:
    """The tensors `names` ({key: shard file}) on `device`, opening each shard once; float ones
    in `dtype` (None: as stored). NaN or Inf is refused, naming the tensor."""
    out = {}
    for fname in sorted(set(names.values())):
        with _open(os.path.join(src, fname)) as f:
            out.update({k: _as(_finite(f.get_tensor(k), k), device, dtype)
                        for k, v in names.items() if v == fname})
    return out


def _finite(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError(f"tensor {name!r} holds NaN or Inf; mxfp4 does not quantize a broken "
                         "model (nothing was written)")
    return t


def _as(x, device=None, dtype=None):
    """A tensor, or each tensor of a dict (a calibration batch), on `device`, floats in `dtype`."""
    if isinstance(x, dict) or hasattr(x, "items"):
        return {k: _as(v, device, dtype) for k, v in x.items()}
    if not isinstance(x, torch.Tensor):
        return x
    return x.to(device=device, dtype=dtype if dtype is not None and x.is_floating_point() else None)


# -- loading any model folder -------------------------------------------------------------

def load_model(directory: str, dtype: torch.dtype | None = torch.float32, device="cpu"):
    """(model, kind) for an mxfp4 checkpoint, a compressed-tensors folder or a float HF folder.

    dtype None keeps the stored dtype. The model is read on the CPU, then placed on `device`
    whole, or, when it does not fit a GPU's free memory, layer by layer (accelerate's
    dispatch: the layers that do not fit stay on the CPU and visit the GPU in turn).
    """
    from .checkpoint import load_quantized

    directory = os.fspath(directory)
    if os.path.isfile(os.path.join(directory, CONFIG_NAME)):
        model = load_quantized(directory)
        if dtype is not None:
            model = model.to(dtype)
        return place(model, device), "mxfp4"
    weight_files(directory)  # clear errors for missing or pickle-only weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory)
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    kwargs, kind = {"dtype": dtype or "auto"}, "float"
    if method == "compressed-tensors":
        from transformers import CompressedTensorsConfig

        kwargs["quantization_config"], kind = CompressedTensorsConfig(dequantize=True), method
    elif method == "mxfp4":  # gpt-oss layout; dequantize=True keeps transformers off the Hub's kernels
        from transformers import Mxfp4Config

        kwargs["quantization_config"], kind = Mxfp4Config(dequantize=True), "mxfp4-gpt-oss"
    model = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
    return place(model.eval(), device), kind


def place(model: nn.Module, device) -> nn.Module:
    """The model on `device`; on a GPU too small for it, dispatched layer by layer."""
    device = torch.device(device)
    if device.type != "cuda":
        return model.to(device)
    need = sum(t.nbytes for t in model.state_dict().values())
    free, _ = torch.cuda.mem_get_info(device)
    if need < 0.85 * free:
        return model.to(device)
    from accelerate import dispatch_model, infer_auto_device_map

    index = device.index if device.index is not None else torch.cuda.current_device()
    budget = {index: int(0.85 * free), "cpu": max(need * 2, 1 << 30)}
    return dispatch_model(model, infer_auto_device_map(model, max_memory=budget))
