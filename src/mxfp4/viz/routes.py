"""The JSON API: one function per endpoint, params dict in, JSON-ready dict out.

Each function checks every parameter (validate.py) before it calls the library, so a bad
request is a 4xx with a message and never reaches torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..codec import ROUNDINGS, SCALE_RULES
from ..format import BLOCK_SIZE
from . import api, benchmarks, demos, models, stored, training
from .safe_paths import list_models
from .validate import (
    ApiError,
    choice,
    get,
    integer,
    matrix,
    number,
    number_list,
    only_keys,
    plain,
    power_of_two,
)

MAX_SEED = 2**31 - 1
MAX_RULES_VALUES = 16384
MAX_SAMPLES = 1 << 20


@dataclass
class Context:
    """What the server was started with."""

    models_dir: str | None = None
    benchmark_dirs: list | None = None
    run_dirs: list = field(default_factory=list)  # --runs folders, absolute
    views: tuple = field(default_factory=tuple)


def format_(p, ctx):
    only_keys(p, ())
    return api.format_info()


def quantize(p, ctx):
    only_keys(p, ("values", "scale_rule", "rounding", "seed"))
    if "values" not in p:
        raise ApiError(400, "values is required: a list of 1 to 32 numbers")
    values = number_list(p["values"], "values", api.MAX_BLOCK_VALUES)
    return api.quantize_block(values, get(p, "scale_rule", "floor", choice, SCALE_RULES),
                              get(p, "rounding", "nearest", choice, ROUNDINGS),
                              get(p, "seed", 0, integer, 0, MAX_SEED))


def mapping(p, ctx):
    only_keys(p, ("lo", "hi", "points"))
    lo = get(p, "lo", -7.5, number, -7.99, 7.99)
    hi = get(p, "hi", 7.5, number, -7.99, 7.99)
    if lo >= hi:
        raise ApiError(400, f"lo ({plain(lo)}) must be below hi ({plain(hi)})")
    return api.mapping(lo, hi, get(p, "points", 1201, integer, 2, 20001))


def _samples(p):
    return dict(sigma=get(p, "sigma", 1.0, number, 1e-6, 1e6),
                block_size=get(p, "block_size", BLOCK_SIZE, power_of_two, 2, 1024),
                n=get(p, "n", 65536, integer, 32, MAX_SAMPLES),
                seed=get(p, "seed", 0, integer, 0, MAX_SEED))


def distribution(p, ctx):
    only_keys(p, ("sigma", "block_size", "n", "seed", "scale_rule", "distribution"))
    return api.distribution(**_samples(p), scale_rule=get(p, "scale_rule", "floor", choice, SCALE_RULES),
                            dist=get(p, "distribution", "normal", choice, api.DISTRIBUTIONS))


def rules(p, ctx):
    only_keys(p, ("sigma", "block_size", "n", "seed", "distribution", "rounding", "values"))
    values = get(p, "values", None, number_list, MAX_RULES_VALUES)
    s = _samples(p)
    return api.rules(dist=get(p, "distribution", "normal", choice, api.DISTRIBUTIONS),
                     sigma=s["sigma"], n=s["n"], block_size=s["block_size"], seed=s["seed"],
                     rounding=get(p, "rounding", "nearest", choice, ROUNDINGS), values=values)


def matmul(p, ctx):
    only_keys(p, ("m", "n", "k", "block_size", "seed", "scale_rule", "a", "b"))
    m, n = get(p, "m", 2, integer, 1, 8), get(p, "n", 2, integer, 1, 8)
    bs = get(p, "block_size", 8, power_of_two, 2, 32)
    k = get(p, "k", 32, integer, 2, 256)
    if k % bs:
        raise ApiError(400, f"k ({k}) must be a multiple of block_size ({bs})")
    a = get(p, "a", None, matrix, m, k)
    b = get(p, "b", None, matrix, n, k)
    return demos.matmul_steps(m, n, k, bs, get(p, "seed", 0, integer, 0, MAX_SEED),
                              get(p, "scale_rule", "floor", choice, SCALE_RULES), a, b)


def moe(p, ctx):
    only_keys(p, ("tokens", "experts", "top_k", "hidden", "seed"))
    experts = get(p, "experts", 8, integer, 2, 64)
    hidden = get(p, "hidden", 64, integer, 32, 256)
    if hidden % BLOCK_SIZE:
        raise ApiError(400, f"hidden ({hidden}) must be a multiple of the block size {BLOCK_SIZE}")
    return demos.moe_layer(get(p, "tokens", 4, integer, 1, 16), experts,
                           get(p, "top_k", 2, integer, 1, min(8, experts)), hidden,
                           get(p, "seed", 0, integer, 0, MAX_SEED))


def memory(p, ctx):
    only_keys(p, ("experts", "expert_params_m", "other_params_m"))
    return demos.memory(get(p, "experts", 128, integer, 1, 4096),
                        get(p, "expert_params_m", 100.0, number, 0.001, 1e5),
                        get(p, "other_params_m", 0.0, number, 0.0, 1e7))


def memory_presets(p, ctx):
    only_keys(p, ())
    return {"presets": demos.presets(), "models": demos.model_memory_table(),
            "gpu_bytes": demos.GPU_BYTES, "bits_per_mxfp4_element": demos.BITS_PER_MX_ELEMENT}


def benchmarks_(p, ctx):
    only_keys(p, ())
    return benchmarks.load(ctx.benchmark_dirs)


def training_(p, ctx):
    only_keys(p, ())
    return training.listing(ctx.benchmark_dirs, ctx.run_dirs)


def training_run(p, ctx):
    only_keys(p, ("id",))
    return training.run_curve(ctx.benchmark_dirs, ctx.run_dirs, p.get("id"))


def models_(p, ctx):
    only_keys(p, ())
    return {"configured": ctx.models_dir is not None, "entries": list_models(ctx.models_dir),
            "sample_elements": models.SAMPLE_ELEMENTS,
            "how_to": "Start the server with `mxfp4 viz --models DIR`; DIR may hold .safetensors "
                      "files and Hugging Face model folders."}


def _path(p):
    if "path" not in p:
        raise ApiError(400, "path is required: a file or folder relative to the models directory")
    return p["path"]


def _name(p):
    if not isinstance(p.get("name"), str) or not p["name"]:
        raise ApiError(400, "name is required: a tensor name from /api/model")
    return p["name"]


def model(p, ctx):
    only_keys(p, ("path",))
    return models.tensors(ctx.models_dir, _path(p))


def model_qsnr(p, ctx):
    only_keys(p, ("path", "name"))
    return models.qsnr_by_rule(ctx.models_dir, _path(p), _name(p))


def model_tensor(p, ctx):
    only_keys(p, ("path", "name", "rule"))
    rule = get(p, "rule", "floor", choice, SCALE_RULES)
    if models.kind(ctx.models_dir, _path(p), _name(p)) == models.STORED:
        return stored.detail(ctx.models_dir, p["path"], p["name"])
    return models.tensor_detail(ctx.models_dir, p["path"], p["name"], rule)


def model_block(p, ctx):
    only_keys(p, ("path", "name", "row", "block"))
    row, block = get(p, "row", 0, integer, 0, 2**62), get(p, "block", 0, integer, 0, 2**62)
    if models.kind(ctx.models_dir, _path(p), _name(p)) == models.STORED:
        return stored.block_values(ctx.models_dir, p["path"], p["name"], row, block)
    return models.block_values(ctx.models_dir, p["path"], p["name"], row, block)


# (method, path, handler); GETs read the query string, POSTs a JSON body.
ENDPOINTS = (
    ("GET", "/api/format", format_),
    ("POST", "/api/quantize", quantize),
    ("GET", "/api/mapping", mapping),
    ("POST", "/api/distribution", distribution),
    ("POST", "/api/rules", rules),
    ("POST", "/api/matmul", matmul),
    ("POST", "/api/moe", moe),
    ("POST", "/api/memory", memory),
    ("GET", "/api/memory/presets", memory_presets),
    ("GET", "/api/benchmarks", benchmarks_),
    ("GET", "/api/training", training_),
    ("GET", "/api/training/run", training_run),
    ("GET", "/api/models", models_),
    ("GET", "/api/model", model),
    ("GET", "/api/model/qsnr", model_qsnr),
    ("GET", "/api/model/tensor", model_tensor),
    ("GET", "/api/model/block", model_block),
)
