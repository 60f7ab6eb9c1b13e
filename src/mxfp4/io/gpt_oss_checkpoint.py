"""Read a whole GPT-OSS checkpoint, in either published layout, one tensor at a time.

Layouts (a gpt-oss repository ships both; a folder with both is read as Hugging Face unless
`layout="original"`):
  hf        config.json (model_type gpt_oss) + model*.safetensors, with or without
            model.safetensors.index.json; names model.layers.{i}.self_attn.q_proj.weight, ...
  original  original/config.json + original/*.safetensors (or a folder whose config.json is
            in that format); names block.{i}.attn.qkv.weight, ...
Either way `iter_tensors` yields the canonical names of mxfp4.io.gpt_oss.model_names
(blocks.{i}.attn.qkv.weight, blocks.{i}.mlp.w1.blocks, ...), the experts as stored (MXFP4
blocks + E8M0 scales, never dequantized).

Nothing is half-loaded silently: every shard's header is checked against the config before the
first tensor is yielded (missing, unexpected, wrong shape or dtype, bf16 experts, truncated or
corrupt files), and each tensor's values as it streams (NaN scale bytes 0xFF, NaN/Inf floats).
Every error is a ValueError naming the file and the tensor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .gpt_oss import model_names

LAYOUTS = ("hf", "original")
NAMING = {"hf": "hf", "original": "gpt-oss"}  # layout -> mxfp4.io.gpt_oss naming
INDEX_NAME = "model.safetensors.index.json"
FLOAT_KINDS = ("BF16", "F16", "F32")  # safetensors dtype names of float tensors we read


# -- config --------------------------------------------------------------------------------

def locate(path, layout: str | None = None) -> tuple[str, str, str, dict]:
    """(layout, weights folder, config file, its JSON) of the checkpoint folder `path`."""
    path = os.fspath(path)
    if layout not in (None, *LAYOUTS):
        raise ValueError(f"layout must be one of {LAYOUTS} or None, got {layout!r}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint folder {path!r} does not exist")
    candidates = [(path, os.path.join(path, "config.json")),
                  (os.path.join(path, "original"), os.path.join(path, "original", "config.json"))]
    for folder, config_path in candidates:
        if not os.path.isfile(config_path):
            continue
        raw = load_json(config_path)
        kind = "hf" if raw.get("model_type") == "gpt_oss" else (
            "original" if "model_type" not in raw and "num_experts" in raw else None)
        if kind is None and folder == path and layout != "original":
            raise ValueError(f"{config_path!r} does not describe a GPT-OSS model "
                             f"(model_type {raw.get('model_type')!r})")
        if kind is not None and layout in (None, kind):
            return kind, folder, config_path, raw
    raise FileNotFoundError(f"{path!r} has no GPT-OSS config.json or original/config.json"
                            + (f" in the {layout} layout" if layout else ""))


def load_json(path: str) -> dict:
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path!r} is corrupt: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path!r} is not a JSON object")
    return raw


def read_config(path, layout: str | None = None) -> dict:
    """The model's GptOssConfig fields from config.json (HF) or original/config.json."""
    layout, _, config_path, raw = locate(path, layout)
    c = _from_hf(raw, config_path) if layout == "hf" else _from_original(raw)
    _check_config(c, config_path)
    return c


def _from_hf(raw: dict, config_path: str) -> dict:
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "yarn"))
    if rope_type not in ("yarn", "default"):
        raise ValueError(f"{config_path!r}: rope_type {rope_type!r} is not GPT-OSS's (yarn)")
    # transformers rounds YaRN's correction range unless told not to; gpt-oss does not round
    if rope_type == "yarn" and rope and rope.get("truncate", True) is not False:
        raise ValueError(f"{config_path!r}: YaRN with truncate true (the correction range "
                         "rounded) is not GPT-OSS's RoPE; set \"truncate\": false")
    c = {k: raw.get(k) for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                 "intermediate_size", "head_dim", "num_attention_heads",
                                 "num_key_value_heads")}
    c.update(num_experts=raw.get("num_local_experts", raw.get("num_experts")),
             experts_per_token=raw.get("num_experts_per_tok", raw.get("experts_per_token")),
             sliding_window=raw.get("sliding_window", 128), layer_types=raw.get("layer_types"),
             rope_theta=float(rope.get("rope_theta", raw.get("rope_theta", 150000.0))),
             rope_scaling_factor=float(rope.get("factor", 32.0)) if rope_type == "yarn" else 1.0,
             rope_ntk_alpha=float(rope.get("beta_slow", 1.0)),
             rope_ntk_beta=float(rope.get("beta_fast", 32.0)),
             initial_context_length=rope.get("original_max_position_embeddings", 4096),
             swiglu_limit=float(raw.get("swiglu_limit", 7.0)),
             rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
             eos_token_id=raw.get("eos_token_id"), pad_token_id=raw.get("pad_token_id"))
    return c


def _from_original(raw: dict) -> dict:
    # defaults of gpt_oss.torch.model.ModelConfig; the original format has no eps (1e-5) and
    # slides every even layer
    c = {k: raw.get(k) for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_experts",
                                 "experts_per_token", "intermediate_size", "head_dim",
                                 "num_attention_heads", "num_key_value_heads")}
    defaults = dict(sliding_window=128, rope_theta=150000.0, rope_scaling_factor=32.0,
                    rope_ntk_alpha=1.0, rope_ntk_beta=32.0, initial_context_length=4096,
                    swiglu_limit=7.0)
    c.update({k: type(v)(raw.get(k, v)) for k, v in defaults.items()})
    c.update(layer_types=None, rms_norm_eps=1e-5, eos_token_id=None, pad_token_id=None)
    return c


def _check_config(c: dict, config_path: str) -> None:
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_experts",
                "experts_per_token", "intermediate_size", "head_dim", "num_attention_heads",
                "num_key_value_heads", "initial_context_length"):
        if not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] <= 0:
            raise ValueError(f"{config_path!r}: {key} must be a positive int, got {c[key]!r}")
    if c["layer_types"] is None:  # what transformers and gpt-oss do: even layers slide
        c["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention"
                            for i in range(c["num_hidden_layers"])]
    types = c["layer_types"]
    if (not isinstance(types, list) or len(types) != c["num_hidden_layers"]
            or not set(types) <= {"sliding_attention", "full_attention"}):
        raise ValueError(f"{config_path!r}: layer_types must list 'sliding_attention' or "
                         f"'full_attention' for each of the {c['num_hidden_layers']} layers")
    if "sliding_attention" in types and (not isinstance(c["sliding_window"], int)
                                         or c["sliding_window"] <= 0):
        raise ValueError(f"{config_path!r}: sliding_window must be a positive int, got "
                         f"{c['sliding_window']!r}")
    for key in ("hidden_size", "intermediate_size"):  # MXFP4 experts: whole blocks of 32
        if c[key] % 32:
            raise ValueError(f"{config_path!r}: {key} {c[key]} is not a multiple of 32")
    if c["num_attention_heads"] % c["num_key_value_heads"]:
        raise ValueError(f"{config_path!r}: num_attention_heads {c['num_attention_heads']} is "
                         f"not a multiple of num_key_value_heads {c['num_key_value_heads']}")
    if c["experts_per_token"] > c["num_experts"]:
        raise ValueError(f"{config_path!r}: experts_per_token {c['experts_per_token']} is more "
                         f"than num_experts {c['num_experts']}")


# -- what the shards must hold -------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """One tensor a checkpoint must hold: its canonical name, its part of it, shape and dtype."""

    canonical: str
    part: int
    parts: int
    shape: tuple
    kind: str  # "float" or "uint8"


def canonical_shapes(c: dict) -> dict[str, tuple]:
    """{canonical name: shape} of a model with config `c` (read_config's dict)."""
    V, H, E, I = c["vocab_size"], c["hidden_size"], c["num_experts"], c["intermediate_size"]
    hd, nq, nkv = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    qkv = (nq + 2 * nkv) * hd
    layer = {"attn.norm.weight": (H,), "attn.qkv.weight": (qkv, H), "attn.qkv.bias": (qkv,),
             "attn.sinks": (nq,), "attn.out.weight": (H, nq * hd), "attn.out.bias": (H,),
             "mlp.norm.weight": (H,), "mlp.router.weight": (E, H), "mlp.router.bias": (E,),
             "mlp.w1.blocks": (E, 2 * I, H // 32, 16), "mlp.w1.scales": (E, 2 * I, H // 32),
             "mlp.w1.bias": (E, 2 * I), "mlp.w2.blocks": (E, H, I // 32, 16),
             "mlp.w2.scales": (E, H, I // 32), "mlp.w2.bias": (E, H)}
    shapes = {"embedding.weight": (V, H), "norm.weight": (H,), "unembedding.weight": (V, H)}
    for i in range(c["num_hidden_layers"]):
        shapes.update({f"blocks.{i}.{k}": v for k, v in layer.items()})
    return shapes


def expected_tensors(c: dict, layout: str, float_experts: bool = False) -> dict[str, Expected]:
    """{checkpoint tensor name: Expected}. float_experts: a Hugging Face fine-tune's
    gate_up_proj [E, H, 2I] / down_proj [E, I, H] in place of the MXFP4 blocks and scales."""
    shapes = canonical_shapes(c)
    qkv_rows = [n * c["head_dim"] for n in (c["num_attention_heads"], c["num_key_value_heads"],
                                            c["num_key_value_heads"])]
    out = {}
    for canonical, sources in model_names(NAMING[layout], c["num_hidden_layers"]).items():
        shape = shapes[canonical]
        kind = "uint8" if canonical.endswith((".blocks", ".scales")) else "float"
        for part, name in enumerate(sources):
            part_shape = (qkv_rows[part], *shape[1:]) if len(sources) == 3 else shape
            out[name] = Expected(canonical, part, len(sources), part_shape, kind)
    if float_experts:
        E, H, I = c["num_experts"], c["hidden_size"], c["intermediate_size"]
        for name in [n for n in out if n.endswith(("_blocks", "_scales"))]:
            del out[name]
        for i in range(c["num_hidden_layers"]):
            for w, shape in (("w1", (E, H, 2 * I)), ("w2", (E, I, H))):
                proj = "gate_up_proj" if w == "w1" else "down_proj"
                out[f"model.layers.{i}.mlp.experts.{proj}"] = Expected(
                    f"blocks.{i}.mlp.{w}.weight", 0, 1, shape, "float")
    return out


def shard_files(folder: str, layout: str) -> tuple[list[str], dict]:
    """(shard paths, the index's {tensor: file} or {}) of a weights folder."""
    index_path = os.path.join(folder, INDEX_NAME)
    if layout == "hf" and os.path.isfile(index_path):
        weight_map = load_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index_path!r} has no weight_map")
        files = sorted(set(weight_map.values()))
        for fname in files:
            if os.path.basename(fname) != fname or not os.path.isfile(os.path.join(folder, fname)):
                raise ValueError(f"{index_path!r} lists shard {fname!r}, which is missing")
        return [os.path.join(folder, f) for f in files], weight_map
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder!r} holds no .safetensors files")
    return [os.path.join(folder, f) for f in files], {}


def open_shard(file: str, device="cpu"):
    """safe_open, with a truncated or corrupt file reported as a ValueError naming it."""
    from safetensors import safe_open

    try:
        return safe_open(file, framework="pt", device=device)
    except Exception as err:  # safetensors raises its own types for broken headers
        raise ValueError(f"{file}: truncated or corrupt safetensors file ({err})") from err


def check_shards(files: list[str], expected: dict[str, Expected], config_path: str,
                 weight_map: dict | None = None) -> dict[str, str]:
    """{tensor: file} after checking every shard's header against `expected` (nothing read)."""
    where = {}
    for file in files:
        with open_shard(file) as f:
            for key in f.keys():
                slice_ = f.get_slice(key)
                _check_header(file, key, expected.get(key), tuple(slice_.get_shape()),
                              slice_.get_dtype(), config_path)
                if key in where:
                    raise ValueError(f"{file}: tensor {key} is also in {where[key]}")
                where[key] = file
    missing = [k for k in expected if k not in where]
    if missing:  # name the shard the index promised, else the folder
        name, folder = missing[0], os.path.dirname(files[0])
        file = os.path.join(folder, weight_map[name]) if name in (weight_map or {}) else folder
        raise ValueError(f"{file}: tensor {name} is missing ({len(missing)} tensors that "
                         f"{config_path} implies are missing)")
    return where


def _check_header(file, key, want: Expected | None, shape, dtype, config_path) -> None:
    if want is None:
        if key.endswith((".experts.gate_up_proj", ".experts.down_proj", ".mlp1_weight",
                         ".mlp2_weight")):
            raise ValueError(f"{file}: tensor {key} holds {dtype} experts where MXFP4 blocks "
                             f"are expected; run `mxfp4 quantize` first")
        raise ValueError(f"{file}: unexpected tensor {key} (not part of the GPT-OSS model "
                         f"that {config_path} describes)")
    if want.kind == "uint8" and dtype != "U8":
        raise ValueError(f"{file}: tensor {key} is {dtype}, expected uint8 MXFP4 "
                         f"{want.canonical.rpartition('.')[2]}; run `mxfp4 quantize` first")
    if want.kind == "float" and dtype not in FLOAT_KINDS:
        raise ValueError(f"{file}: tensor {key} is {dtype}, expected one of {FLOAT_KINDS}")
    if shape != want.shape:
        raise ValueError(f"{file}: tensor {key} has shape {shape}, but {config_path} gives "
                         f"{want.shape}")


def check_values(file: str, key: str, t: torch.Tensor) -> None:
    """NaN scale bytes (0xFF) in experts and NaN/Inf floats, named by file, tensor and place."""
    if t.dtype == torch.uint8:
        if key.endswith("scales") and bool((t == 0xFF).any()):
            e, row, block = (t == 0xFF).nonzero()[0].tolist()
            raise ValueError(f"{file}: tensor {key} has scale byte 0xFF (NaN) at expert {e}, "
                             f"row {row}, block {block}")
    elif not bool(torch.isfinite(t).all()):
        raise ValueError(f"{file}: tensor {key} holds NaN or Inf")


def _device(device) -> str:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


# -- streaming -----------------------------------------------------------------------------

def iter_tensors(path, config: dict, *, device="cpu", progress=None,
                 layout: str | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (canonical name, tensor on `device`) for every tensor of the checkpoint, once.

    Host memory stays near one tensor (a layer's q, k and v in the Hugging Face layout, until
    they are fused). A callable `progress` is called as progress(done, total) after each tensor.
    """
    layout, folder, config_path, _ = locate(path, layout)
    files, weight_map = shard_files(folder, layout)
    expected = expected_tensors(config, layout)
    check_shards(files, expected, config_path, weight_map)
    total = len({e.canonical for e in expected.values()})
    done, pending, device = 0, {}, _device(device)
    for file in files:
        with open_shard(file, device) as f:
            for key in f.keys():
                try:
                    t = f.get_tensor(key)
                except Exception as err:
                    raise ValueError(f"{file}: cannot read tensor {key} ({err})") from err
                check_values(file, key, t)
                want = expected[key]
                if want.parts > 1:  # a Hugging Face q/k/v projection: fuse when all three came
                    parts = pending.setdefault(want.canonical, [None] * want.parts)
                    parts[want.part] = t
                    if any(p is None for p in parts):
                        continue
                    t = torch.cat(pending.pop(want.canonical))
                yield want.canonical, t
                done += 1
                if callable(progress):  # a bool (show a bar or not) is the caller's to draw
                    progress(done, total)
    if done != total:
        raise ValueError(f"{folder}: streamed {done} of {total} tensors")


# -- writing the original layout -----------------------------------------------------------

ORIGINAL_KEYS = ("num_hidden_layers", "num_experts", "experts_per_token", "vocab_size",
                 "hidden_size", "intermediate_size", "swiglu_limit", "head_dim",
                 "num_attention_heads", "num_key_value_heads", "sliding_window",
                 "initial_context_length", "rope_theta", "rope_scaling_factor", "rope_ntk_alpha",
                 "rope_ntk_beta")


def save_gpt_oss_original(src, dst, *, layout: str | None = None, overwrite: bool = False,
                          max_shard_bytes: int = 4 << 30, progress=None) -> str:
    """Write the GPT-OSS checkpoint `src` (either layout) in the original layout to `dst`.

    `dst` gets config.json and model*.safetensors as a gpt-oss repository's original/ folder
    holds them (gpt-oss's own torch and triton code read it). Tensors stream from `src`; each
    shard is written when full. Written beside `dst` and moved into place when complete.
    """
    from .checkpoint import write_json
    from .hf import _save
    from .output_folder import staged_folder

    config = read_config(src, layout)
    L = config["num_hidden_layers"]
    slides = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(L)]
    if config["layer_types"] != slides or config["rms_norm_eps"] != 1e-5:
        raise ValueError(f"{os.fspath(src)!r}: the original layout cannot express its "
                         "layer_types or rms_norm_eps (it slides even layers, eps 1e-5)")
    names = {c: sources[0] for c, sources in model_names(NAMING["original"], L).items()}
    with staged_folder(dst, overwrite=overwrite, inputs=[src]) as tmp:
        shards, current, size = [], {}, 0
        for canonical, t in iter_tensors(src, config, layout=layout, progress=progress):
            if current and size + t.nbytes > max_shard_bytes:
                shards.append(os.path.join(tmp, f"shard-{len(shards)}"))
                _save(current, shards[-1])
                current, size = {}, 0
            current[names[canonical]] = t
            size += t.nbytes
        shards.append(os.path.join(tmp, f"shard-{len(shards)}"))
        _save(current, shards[-1])
        for i, path in enumerate(shards):
            os.rename(path, os.path.join(tmp, "model.safetensors" if len(shards) == 1 else
                                         f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"))
        write_json(os.path.join(tmp, "config.json"), {k: config[k] for k in ORIGINAL_KEYS})
    return os.fspath(dst)
