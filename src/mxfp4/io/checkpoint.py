"""save_quantized / load_quantized: a model with MXFP4 layers as safetensors + mxfp4_config.json.

Layout of a checkpoint folder:
  model.safetensors (or model-0000i-of-0000n.safetensors)
      every persistent tensor of the model under its state_dict name; an MXLinear or
      MXEmbedding `m` contributes `m.weight_codes` and `m.weight_scales` (uint8) and `m.bias`.
  mxfp4_config.json
      {"format": "mxfp4", "format_version": "1", "modules": {name: record}, "aliases": {...},
       "files": {file: {"bytes": n, "sha256": hex}}}; a record gives kind ("linear" or
      "embedding"), shape, axis, block_size, scale_rule, method and hadamard of one module.
  config.json (Hugging Face models only): the model's own config, so load_quantized can
      rebuild the model without being given one.
Tensors that share storage (tied weights) are written once and listed in "aliases".
Every file is written atomically; mxfp4_config.json comes last, so a folder whose save was
interrupted does not load. Only safetensors and JSON are ever read: no pickle.
"""

from __future__ import annotations

import hashlib
import json
import os

import torch
from torch import nn

from ..tensor import MXTensor, atomic_write

CONFIG_NAME = "mxfp4_config.json"
FORMAT_VERSION = "1"
RECORD_KEYS = ("kind", "shape", "axis", "block_size", "scale_rule", "method", "hadamard")


def module_record(module: nn.Module) -> dict | None:
    """The config record of an MXLinear / MXEmbedding, None for other modules."""
    from ..nn.embedding import MXEmbedding
    from ..nn.linear import MXLinear

    if isinstance(module, MXLinear):
        return {"kind": "linear", "shape": [module.out_features, module.in_features], "axis": 1,
                "block_size": module.block_size, "scale_rule": module.scale_rule,
                "method": module.method, "hadamard": module.hadamard,
                "bias": module.bias is not None}
    if isinstance(module, MXEmbedding):
        return {"kind": "embedding", "shape": [module.num_embeddings, module.embedding_dim],
                "axis": 1, "block_size": module.block_size, "scale_rule": module.scale_rule,
                "method": "rtn", "hadamard": False, "padding_idx": module.padding_idx,
                "embed_scale": float(module.embed_scale),
                "dtype": str(module.embed_scale.dtype).replace("torch.", "")}
    return None


def _storage_key(t: torch.Tensor):
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.dtype,
            tuple(t.shape), t.stride())


def split_aliases(state: dict) -> tuple[dict, dict]:
    """Drop tensors that share storage with an earlier one; return (unique, {alias: target})."""
    unique, aliases, first = {}, {}, {}
    for name, t in state.items():
        key = _storage_key(t)
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
            unique[name] = t
    return unique, aliases


def file_digest(path: str) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return {"bytes": os.path.getsize(path), "sha256": h.hexdigest()}


def write_shards(tensors: dict, directory: str, max_shard_bytes: int, metadata=None) -> dict:
    """Write tensors as one or more safetensors files; return {file: digest}."""
    from safetensors.torch import save_file

    shards, current, size = [], {}, 0
    for name, t in tensors.items():
        if current and size + t.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = t.detach().contiguous().cpu()
        size += t.nbytes
    shards.append(current)
    files = {}
    for i, shard in enumerate(shards):
        fname = ("model.safetensors" if len(shards) == 1
                 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
        path = os.path.join(directory, fname)
        atomic_write(path, lambda tmp: save_file(shard, tmp, metadata=metadata or {"format": "pt"}))
        files[fname] = file_digest(path)
    return files


def write_json(path: str, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


# transformers refuses a quantization_config without "quant_method" (and only warns about an
# unknown one, then loads the float architecture with random Linear weights): this marker makes
# AutoModel*.from_pretrained on our folders fail instead, and tells a reader how to load them.
HF_REFUSAL = {"format": "mxfp4",
              "load_with": "mxfp4.load_quantized(folder) (pip install mxfp4); transformers "
                           "cannot read this folder: write it with --format compressed-tensors"}


def hf_config_json(config) -> dict:
    """A transformers config as a dict, marked so that transformers refuses the folder."""
    return {**json.loads(config.to_json_string()), "quantization_config": HF_REFUSAL}


def save_quantized(model: nn.Module, directory: str | os.PathLike, *,
                   max_shard_bytes: int = 4 << 30, overwrite: bool = False) -> str:
    """Write `model` (with MXLinear / MXEmbedding layers) to `directory`; return the config path.

    The folder is written beside `directory` and moved into place when complete; a non-empty
    `directory` is refused unless `overwrite` (it is then replaced whole).
    """
    from .output_folder import staged_folder

    modules = {n: r for n, m in model.named_modules() if (r := module_record(m)) is not None}
    unique, aliases = split_aliases(model.state_dict())
    if any(t.device.type == "meta" for t in unique.values()):
        raise ValueError("the model still has tensors on the meta device; nothing to save")
    config = getattr(model, "config", None)
    with staged_folder(directory, overwrite=overwrite) as tmp:
        if config is not None and hasattr(config, "to_json_string"):
            write_json(os.path.join(tmp, "config.json"), hf_config_json(config))
        files = write_shards(unique, tmp, max_shard_bytes)
        dtypes = {str(p.dtype) for p in model.parameters() if p.is_floating_point()}
        record = {"format": "mxfp4", "format_version": FORMAT_VERSION, "modules": modules,
                  "aliases": aliases, "files": files, "model_class": type(model).__name__,
                  "dtype": sorted(dtypes)[0].replace("torch.", "") if len(dtypes) == 1 else None}
        write_json(os.path.join(tmp, CONFIG_NAME), record)
    return os.path.join(os.fspath(directory), CONFIG_NAME)


# -- loading ----------------------------------------------------------------------------

def read_config(directory: str) -> dict:
    """Read and check mxfp4_config.json; a missing, corrupt or foreign file raises ValueError."""
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory!r} has no {CONFIG_NAME}: not an mxfp4 checkpoint "
                                "(or its save was interrupted)")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path!r} is corrupt: {err}") from err
    if not isinstance(config, dict) or config.get("format") != "mxfp4":
        raise ValueError(f"{path!r} does not describe an mxfp4 checkpoint")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path!r} has format_version {config.get('format_version')!r}; this "
                         f"version of mxfp4 reads {FORMAT_VERSION!r}")
    for key, kind in (("modules", dict), ("aliases", dict), ("files", dict)):
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{path!r}: '{key}' is missing or malformed")
    for name, rec in config["modules"].items():
        if not isinstance(rec, dict) or any(k not in rec for k in RECORD_KEYS):
            raise ValueError(f"{path!r}: the record of module {name!r} lacks one of {RECORD_KEYS}")
    return config


def read_tensors(directory: str, files: dict, verify: bool = True, device="cpu") -> dict:
    """All tensors of the listed safetensors files, after checking their size and checksum."""
    from safetensors import safe_open

    tensors = {}
    for fname, digest in files.items():
        path = os.path.join(directory, fname)
        if os.path.basename(fname) != fname or not fname.endswith(".safetensors"):
            raise ValueError(f"unexpected file name {fname!r} in the checkpoint config")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint file {path!r} is missing")
        size = os.path.getsize(path)
        if size != digest.get("bytes"):
            raise ValueError(f"checkpoint file {path!r} is truncated or altered: {size} bytes, "
                             f"expected {digest.get('bytes')}")
        if verify and file_digest(path)["sha256"] != digest.get("sha256"):
            raise ValueError(f"checkpoint file {path!r} is corrupt: its sha256 does not match "
                             "the one recorded when it was saved")
        try:
            with safe_open(path, framework="pt", device=str(device)) as f:
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as err:  # safetensors raises its own types for broken headers
            raise ValueError(f"cannot read checkpoint file {path!r}: {err}") from err
    return tensors


def build_module(name: str, rec: dict, tensors: dict) -> nn.Module:
    """An MXLinear / MXEmbedding from its record and tensors."""
    from ..nn.embedding import MXEmbedding
    from ..nn.linear import MXLinear

    try:
        codes, scales = tensors[f"{name}.weight_codes"], tensors[f"{name}.weight_scales"]
    except KeyError as err:
        raise ValueError(f"the checkpoint lacks tensor {err.args[0]!r} of module {name!r}") from None
    try:
        mx = MXTensor(codes, scales, rec["shape"], axis=rec["axis"],
                      block_size=rec["block_size"], scale_rule=rec["scale_rule"])
    except (TypeError, ValueError, IndexError) as err:
        raise ValueError(f"module {name!r}: {err}") from err
    if rec["kind"] == "linear":
        bias = tensors.get(f"{name}.bias")
        if rec.get("bias") and bias is None:
            raise ValueError(f"the checkpoint lacks tensor '{name}.bias'")
        return MXLinear(mx, bias, hadamard=rec["hadamard"], method=rec["method"])
    if rec["kind"] == "embedding":
        dtype = getattr(torch, str(rec.get("dtype", "float32")), None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"module {name!r} has an invalid dtype {rec.get('dtype')!r}")
        return MXEmbedding(mx, rec.get("padding_idx"), rec.get("embed_scale", 1.0), dtype=dtype)
    raise ValueError(f"module {name!r} has unknown kind {rec['kind']!r}")


def load_quantized(directory: str | os.PathLike, model: nn.Module | None = None, *,
                   device="cpu", verify: bool = True) -> nn.Module:
    """Load a checkpoint written by save_quantized (or `mxfp4 quantize`).

    `model` is a float model of the same architecture to load into (its layers are replaced);
    without it the folder's config.json is used to build a Hugging Face model. Tensors come
    back bit-identical. `verify` checks each file's sha256.
    """
    from ..nn.convert import _set_module

    directory = os.fspath(directory)
    config = read_config(directory)
    tensors = read_tensors(directory, config["files"], verify)
    for alias, target in config["aliases"].items():
        if target not in tensors:
            raise ValueError(f"alias {alias!r} points to {target!r}, which is not in the checkpoint")
        tensors[alias] = tensors[target]
    if model is None:
        model = build_hf_skeleton(directory)
    for name, rec in config["modules"].items():
        try:
            model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"the model has no module {name!r} recorded in the checkpoint") from None
        _set_module(model, name, build_module(name, rec, tensors))
    missing, unexpected = _assign(model, tensors)
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensors of the model, e.g. {missing[:3]}")
    if unexpected:
        raise ValueError(f"the checkpoint has {len(unexpected)} tensors the model does not, "
                         f"e.g. {unexpected[:3]}")
    return model.to(device).eval()  # after assembly, so buffers the files lack move too


def _assign(model: nn.Module, tensors: dict) -> tuple[list, list]:
    """Put the checkpoint tensors into the model, keeping shared tensors shared."""
    state = model.state_dict(keep_vars=True)
    missing = [k for k in state if k not in tensors]
    unexpected = [k for k in tensors if k not in state]
    by_id = {}
    for key, old in state.items():
        if key not in tensors:
            continue
        new = tensors[key]
        if tuple(new.shape) != tuple(old.shape):
            raise ValueError(f"tensor {key!r} has shape {tuple(new.shape)} in the checkpoint, "
                             f"{tuple(old.shape)} in the model")
        mod_name, _, attr = key.rpartition(".")
        mod = model.get_submodule(mod_name) if mod_name else model
        if attr in mod._parameters:
            param = by_id.setdefault(id(new), nn.Parameter(new, requires_grad=False))
            mod._parameters[attr] = param
        else:
            mod._buffers[attr] = new
    return missing, unexpected


def build_hf_skeleton(directory: str) -> nn.Module:
    """A Hugging Face model from directory/config.json with empty (meta) parameters.

    The class is the one config.json names first in `architectures` (an encoder folder names
    BertModel, whose tensor names lack the `bert.` prefix of the LM-head class that
    AutoModelForCausalLM picks), else AutoModelForCausalLM's, else AutoModel's. Only classes of
    transformers itself: no remote code runs.
    """
    if not os.path.isfile(os.path.join(directory, "config.json")):
        raise ValueError(f"{directory!r} has no config.json: pass the float model to load into")
    import transformers
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    hf_config = AutoConfig.from_pretrained(directory)
    qc = getattr(hf_config, "quantization_config", None)
    if isinstance(qc, dict) and "quant_method" not in qc and qc.get("format") == "mxfp4":
        del hf_config.quantization_config  # our marker that stops transformers, not a quantizer
    name = (getattr(hf_config, "architectures", None) or [None])[0]
    cls = getattr(transformers, name, None) if isinstance(name, str) else None
    with init_empty_weights(include_buffers=False):
        if (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)
                and isinstance(hf_config, cls.config_class or ())):
            model = cls._from_config(hf_config)  # what Auto*.from_config calls
        else:
            try:
                model = AutoModelForCausalLM.from_config(hf_config)
            except ValueError:  # the config type has no causal LM class
                model = AutoModel.from_config(hf_config)
    if hasattr(model, "tie_weights"):  # transformers 5 ties only when loading weights
        model.tie_weights()
    return model.eval()  # from_config builds in training mode: GPTQ calibration ran with dropout
