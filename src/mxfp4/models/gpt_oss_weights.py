"""GPT-OSS weights by name: the checkpoint tensors a model needs, filling a model from a stream
of them, and random ones for from_config.

Names (what mxfp4.io.gpt_oss_checkpoint.iter_tensors streams), i = layer:
  embedding.weight [V, H], norm.weight [H], unembedding.weight [V, H];
  blocks.{i}.attn.{norm.weight, qkv.weight, qkv.bias, sinks, out.weight, out.bias}
      (qkv rows: the query heads, then the key heads, then the value heads);
  blocks.{i}.mlp.norm.weight, blocks.{i}.mlp.router.{weight, bias},
  blocks.{i}.mlp.{w1, w2}.{blocks, scales} (uint8, gpt-oss layout), blocks.{i}.mlp.{w1, w2}.bias.
A GptOss module's parameters carry the same names, except that router / w1 / w2 become the
buffers of blocks.{i}.mlp.moe (an mxfp4.nn.MoE).

With quantize_attention="mxfp4", fill turns attn.qkv.weight, attn.out.weight and
unembedding.weight into MXFP4 as each arrives (mxfp4.nn.MXLinear: codes + E8M0 scales, 4.25
bits per weight; the biases stay in the model's dtype). The rule is round to nearest with the
`even` scale rule (ATTENTION_SCALE_RULE): the best data-free rule of docs/accuracy.md's study on
Gemma 3 270M (perplexity 27.64 against OCP floor's 28.13 and mse's 28.10; GPTQ, better still,
needs calibration text, which loading a checkpoint does not have).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..nn.linear import MXLinear, quantize_weight
from ..nn.moe import MoE
from ..ops import quantize
from ..tensor import MXTensor

QUANTIZE_ATTENTION = (None, "mxfp4")  # GptOss's quantize_attention values
ATTENTION_SCALE_RULE = "even"  # data-free RTN rule for the attention projections and unembedding
QUANTIZED_LINEARS = ("attn.qkv.weight", "attn.out.weight")  # of each block; plus the unembedding
EXPERT_TENSORS = ("router.weight", "router.bias", "w1.blocks", "w1.scales", "w1.bias",
                  "w2.blocks", "w2.scales", "w2.bias")


def shapes(c) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape for config `c`; blocks and scales are uint8, the rest float."""
    from ..io.gpt_oss_checkpoint import canonical_shapes

    return canonical_shapes(dataclasses.asdict(c))


def check_quantize_attention(value) -> None:
    """A clear ValueError unless `value` is one of QUANTIZE_ATTENTION."""
    if not (value is None or (isinstance(value, str) and value in QUANTIZE_ATTENTION)):
        raise ValueError(f"quantize_attention must be None (keep the attention projections and the "
                         f"unembedding in the model's dtype) or 'mxfp4', got {value!r}")


def quantizes(name: str, quantize_attention) -> bool:
    """Whether fill stores tensor `name` as MXFP4 under this quantize_attention."""
    return quantize_attention == "mxfp4" and (
        name == "unembedding.weight" or (name.startswith("blocks.") and name.endswith(QUANTIZED_LINEARS)))


def fill(model, tensors: Iterable[tuple[str, torch.Tensor]], device: torch.device,
         quantize_attention: str | None = None) -> None:
    """Put each (name, tensor) into `model` (a GptOss skeleton) as it arrives: float tensors in
    the model's dtype, a layer's MoE built once its eight tensors are in, and with
    quantize_attention="mxfp4" the attention projections' and the unembedding's weights
    quantized to MXFP4 on `device` (one tensor at a time; see the module docstring). Every name
    must come exactly once, with its shape and kind; otherwise a ValueError names the tensor."""
    check_quantize_attention(quantize_attention)
    config = model.config
    expected, done = shapes(config), set()
    pending: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors:
        if name not in expected:
            raise ValueError(f"unexpected tensor {name!r}: not part of a GPT-OSS model with "
                             f"{config.num_hidden_layers} layers")
        if name in done:
            raise ValueError(f"tensor {name!r} arrived twice")
        if tuple(t.shape) != expected[name]:
            raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)}, expected {expected[name]}")
        packed = name.endswith((".blocks", ".scales"))
        if packed != (t.dtype == torch.uint8) or not (packed or t.dtype.is_floating_point):
            raise ValueError(f"tensor {name!r} has dtype {t.dtype}, expected "
                             f"{'uint8' if packed else 'a float dtype'}")
        done.add(name)
        parts = name.split(".")
        if quantizes(name, quantize_attention):  # from the tensor as stored, not the model's dtype
            install_mx_linear(model, name.rsplit(".", 1)[0], quantize_weight(
                t.to(device), scale_rule=ATTENTION_SCALE_RULE))
            continue
        t = t.to(device) if packed else t.to(device, model.dtype)
        if parts[0] == "blocks" and parts[2] == "mlp" and parts[3] != "norm":
            i = int(parts[1])
            layer = pending.setdefault(i, {})
            layer[".".join(parts[3:])] = t
            if len(layer) == len(EXPERT_TENSORS):
                model.blocks[i].mlp.moe = build_moe(config, pending.pop(i))
        else:
            module, attr = name.rsplit(".", 1)
            setattr(model.get_submodule(module), attr, nn.Parameter(t, requires_grad=False))
    missing = [n for n in expected if n not in done]
    if missing:
        raise ValueError(f"{len(missing)} tensor(s) missing, first {missing[:3]}")


def install_mx_linear(model, path: str, weight: MXTensor) -> None:
    """Replace the Linear at `path` with an MXLinear of `weight`, keeping a bias that has already
    arrived (a later one is set on the MXLinear by name, like any parameter)."""
    model.set_submodule(path, MXLinear(weight, model.get_submodule(path).bias))  # (meta until it arrives)


def build_moe(c, t: dict[str, torch.Tensor]) -> MoE:
    """A layer's MoE from its tensors: blocks and scales taken as they are (no requantizing)."""
    w1 = MXTensor.from_gpt_oss(t["w1.blocks"], t["w1.scales"])
    w2 = MXTensor.from_gpt_oss(t["w2.blocks"], t["w2.scales"])
    return MoE(t["router.weight"], t["router.bias"], w1, t["w1.bias"], w2, t["w2.bias"],
               experts_per_token=c.experts_per_token, swiglu_alpha=c.swiglu_alpha,
               swiglu_limit=c.swiglu_limit)


def random_tensors(c, device, dtype: torch.dtype, seed: int) -> Iterator[tuple[str, torch.Tensor]]:
    """Random tensors for config `c`: matrices ~ N(0, 1/fan_in) (activations stay O(1)), biases
    ~ N(0, 0.02^2), sinks and the embedding ~ N(0, 1), norms 1; experts are MXFP4
    quantizations of random floats, one expert at a time (no float copy of a whole layer)."""
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape, std=1.0, out_dtype=dtype):
        return torch.randn(shape, generator=g, device=device).mul_(std).to(out_dtype)

    for name, shape in shapes(c).items():
        if name.endswith(".scales"):
            continue  # yielded with their blocks
        if name.endswith(".blocks"):
            E, n, kb, _ = shape
            experts = (quantize(randn(n, kb * 32, std=(kb * 32) ** -0.5, out_dtype=torch.float32))
                       for _ in range(E))
            codes, scales = zip(*(q.to_gpt_oss() for q in experts))
            yield name, torch.stack(codes)
            yield name[:-len("blocks")] + "scales", torch.stack(scales)
        elif name.endswith("norm.weight"):
            yield name, torch.ones(shape, device=device, dtype=dtype)
        elif name.endswith(".bias"):
            yield name, randn(*shape, std=0.02)
        elif name.endswith("sinks") or name == "embedding.weight":
            yield name, randn(*shape)
        else:
            yield name, randn(*shape, std=shape[-1] ** -0.5)


@contextmanager
def progress_bar(title: str):
    """A transient rich progress bar on stderr; yields its `report(done, total)`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(title, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
