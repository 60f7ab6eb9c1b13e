"""Export to the compressed-tensors `mxfp4-pack-quantized` format (the MXFP4A16 scheme).

This is what vLLM loads for MXFP4 weights with 16-bit activations. Per quantized Linear `m`:
  m.weight_packed  uint8 [out, in/2]  E2M1 codes, element 2i in the low nibble (as ours)
  m.weight_scale   uint8 [out, in/32] E8M0 bytes, value 2^(s-127) (as ours)
and config.json gains a `quantization_config` with quant_method "compressed-tensors", one
config group targeting Linear layers (4-bit float weights, group strategy, group size 32,
scale_dtype uint8) and the unquantized Linear layers under "ignore". The codes and scales are
ours byte for byte; tests decompress the export with the compressed-tensors package itself.

Not representable in this format (and refused with an error): Hadamard-rotated layers (the
format has no online rotation of our kind), MXFP4 embeddings, block sizes other than 32.
"""

from __future__ import annotations

import json
import os

from torch import nn

from .checkpoint import split_aliases, write_json

FORMAT = "mxfp4-pack-quantized"
TESTED_VERSION = "0.20.0"  # the compressed-tensors release whose reader the tests run


def quantization_config(ignore: list[str]) -> dict:
    """The `quantization_config` entry of config.json for an MXFP4A16 model."""
    weights = {"num_bits": 4, "type": "float", "strategy": "group", "group_size": 32,
               "symmetric": True, "dynamic": False, "scale_dtype": "torch.uint8"}
    return {
        "quant_method": "compressed-tensors", "format": FORMAT,
        "quantization_status": "compressed", "version": TESTED_VERSION,
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                      "input_activations": None, "output_activations": None,
                                      "format": FORMAT}},
        "ignore": sorted(ignore), "kv_cache_scheme": None, "sparsity_config": {},
        "transform_config": {}, "global_compression_ratio": None,
    }


def check_exportable(name: str, record: dict) -> None:
    """Raise ValueError if a quantized module (its mxfp4 record) has no compressed-tensors form."""
    if record["kind"] != "linear":
        raise ValueError(f"{name}: compressed-tensors export covers Linear layers only; "
                         "quantize without --embeddings")
    if record["hadamard"]:
        raise ValueError(f"{name}: Hadamard-rotated layers cannot be expressed in "
                         f"{FORMAT}; use the mxfp4 format")
    if record["block_size"] != 32 or record["axis"] != 1:
        raise ValueError(f"{name}: {FORMAT} needs blocks of 32 along the input dimension")


def rename(name: str, modules: dict) -> str:
    """Our tensor name -> the compressed-tensors one (weight_codes -> weight_packed, ...)."""
    owner, _, attr = name.rpartition(".")
    if owner in modules:
        return {"weight_codes": f"{owner}.weight_packed",
                "weight_scales": f"{owner}.weight_scale"}.get(attr, name)
    return name


def save_compressed_tensors(model: nn.Module, directory: str | os.PathLike, *,
                            max_shard_bytes: int = 4 << 30, overwrite: bool = False) -> str:
    """Write a model with MXLinear layers as a compressed-tensors checkpoint; return its path.

    Written beside `directory` and moved into place when complete; a non-empty `directory` is
    refused unless `overwrite`.
    """
    from .checkpoint import module_record, write_shards
    from .output_folder import staged_folder

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_json_string"):
        raise ValueError("compressed-tensors checkpoints are Hugging Face model folders: the "
                         "model needs a transformers config")
    modules = {}
    for name, mod in model.named_modules():
        record = module_record(mod)
        if record is not None:
            check_exportable(name, record)
            modules[name] = record
    if not modules:
        raise ValueError("the model has no MXLinear layers to export (run quantize_model first)")
    ignore = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    unique, _ = split_aliases(model.state_dict())  # tied weights: HF re-ties them on load
    tensors = {rename(k, modules): v for k, v in unique.items()}
    hf = json.loads(config.to_json_string())
    hf["quantization_config"] = quantization_config(ignore)
    with staged_folder(directory, overwrite=overwrite) as tmp:
        files = write_shards(tensors, tmp, max_shard_bytes)
        write_index(tmp, files, tensors)
        write_json(os.path.join(tmp, "config.json"), hf)
    return os.path.join(os.fspath(directory), "config.json")


def write_index(directory: str, files: dict, tensors: dict | None = None,
                weight_map: dict | None = None) -> None:
    """model.safetensors.index.json, as Hugging Face writes it, when there are several shards."""
    if len(files) < 2:
        return
    if weight_map is None:
        from safetensors import safe_open

        weight_map = {}
        for fname in files:
            with safe_open(os.path.join(directory, fname), framework="pt") as f:
                weight_map.update({k: fname for k in f.keys()})
    total = sum(t.nbytes for t in tensors.values()) if tensors else sum(
        d["bytes"] for d in files.values())
    write_json(os.path.join(directory, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})

