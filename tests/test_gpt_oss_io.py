"""gpt-oss / Hugging Face checkpoint names: detection, checks, loading without re-quantizing."""

import pytest
import torch
from safetensors.torch import save_file

from moe_oracle import random_moe
from mxfp4.io.gpt_oss import (SafetensorsTensors, detect_naming, layer_names, load_moe_layer,
                              moe_layer_tensors)
from mxfp4.nn import MoE


def _checkpoint(m: MoE, naming: str, layer: int) -> dict:
    """The tensors of m as a checkpoint stores them (blocks [E, rows, K/32, 16])."""
    names = layer_names(naming, layer)
    b1, s1 = m.w1.to_gpt_oss()
    b2, s2 = m.w2.to_gpt_oss()
    values = dict(router_weight=m.router_weight, router_bias=m.router_bias, w1_blocks=b1,
                  w1_scales=s1, b1=m.b1, w2_blocks=b2, w2_scales=s2, b2=m.b2)
    return {names[f]: v.contiguous() for f, v in values.items()}


@pytest.fixture(scope="module")
def layer():
    return random_moe(E=8, H=64, I=32, k=4, seed=0)


def test_both_namings_give_the_same_layer_and_output(layer):
    x = torch.randn(5, 64).bfloat16()
    want = layer(x)
    for naming in ("gpt-oss", "hf"):
        tensors = _checkpoint(layer, naming, 3)
        assert detect_naming(tensors, 3) == naming
        m = MoE.from_checkpoint(tensors, 3)
        assert torch.equal(m.w1_codes, layer.w1_codes) and torch.equal(m.w2_scales, layer.w2_scales)
        # no re-quantization: the module gives back the checkpoint's own bytes
        names = layer_names(naming, 3)
        for w, f in ((m.w1, "w1"), (m.w2, "w2")):
            blocks, scales = w.to_gpt_oss()
            assert torch.equal(blocks, tensors[names[f + "_blocks"]])
            assert torch.equal(scales, tensors[names[f + "_scales"]])
        assert torch.equal(m(x), want)


def test_tiny_gpt_oss_safetensors_file(layer, tmp_path):
    other = random_moe(E=8, H=64, I=32, k=4, seed=1)
    tensors = {**_checkpoint(other, "gpt-oss", 0), **_checkpoint(layer, "gpt-oss", 1),
               "block.1.attn.qkv.weight": torch.zeros(4, 64, dtype=torch.bfloat16)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    x = torch.randn(3, 64)
    assert torch.equal(load_moe_layer(path, 1)(x), layer(x))
    assert torch.equal(load_moe_layer(path, 0)(x), other(x))
    assert torch.equal(load_moe_layer(tmp_path, 1)(x), layer(x))  # a folder of shards works too


def test_hf_safetensors_folder_split_in_shards(layer, tmp_path):
    tensors = _checkpoint(layer, "hf", 2)
    names = sorted(tensors)
    save_file({n: tensors[n] for n in names[:4]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({n: tensors[n] for n in names[4:]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    x = torch.randn(2, 64)
    assert torch.equal(load_moe_layer(tmp_path, 2, experts_per_token=4)(x), layer(x))
    assert len(SafetensorsTensors(tmp_path)) == 8


def test_missing_tensor(layer):
    tensors = _checkpoint(layer, "hf", 0)
    del tensors["model.layers.0.mlp.experts.down_proj_scales"]
    with pytest.raises(KeyError, match=r"missing \['model.layers.0.mlp.experts.down_proj_scales'\]"):
        moe_layer_tensors(tensors, 0)


def test_no_layer_and_mixed_namings(layer):
    with pytest.raises(KeyError, match="no MoE tensors for layer 7"):
        moe_layer_tensors(_checkpoint(layer, "hf", 0), 7)
    both = {**_checkpoint(layer, "hf", 0), **_checkpoint(layer, "gpt-oss", 0)}
    with pytest.raises(ValueError, match="both namings"):
        moe_layer_tensors(both, 0)
    with pytest.raises(ValueError, match="non-negative int"):
        layer_names("hf", -1)


def test_wrong_dtypes(layer):
    tensors = _checkpoint(layer, "gpt-oss", 0)
    bad = {**tensors, "block.0.mlp.mlp1_weight.blocks": tensors["block.0.mlp.mlp1_weight.blocks"].float()}
    with pytest.raises(TypeError, match=r"block.0.mlp.mlp1_weight.blocks: expected uint8 MXFP4 blocks, got torch.float32"):
        moe_layer_tensors(bad, 0)
    bad = {**tensors, "block.0.mlp.mlp2_bias": tensors["block.0.mlp.mlp2_bias"].to(torch.int32)}
    with pytest.raises(TypeError, match="block.0.mlp.mlp2_bias: expected a bfloat16"):
        moe_layer_tensors(bad, 0)


def test_wrong_shapes(layer):
    tensors = _checkpoint(layer, "hf", 0)
    p = "model.layers.0.mlp."
    cases = {
        p + "experts.gate_up_proj_scales": (torch.zeros(8, 64, 3, dtype=torch.uint8), r"\(8, 64, 2\)"),
        p + "experts.down_proj_blocks": (torch.zeros(8, 64, 2, 16, dtype=torch.uint8), r"\(8, 64, 1, 16\)"),
        p + "router.weight": (torch.zeros(8, 32, dtype=torch.bfloat16), r"\(8, 64\)"),
        p + "experts.down_proj_bias": (torch.zeros(7, 64, dtype=torch.bfloat16), r"\(8, 64\)"),
    }
    for name, (value, want) in cases.items():
        with pytest.raises(ValueError, match=rf"{name}: expected shape .*{want}"):
            moe_layer_tensors({**tensors, name: value}, 0)
    bad = {**tensors, p + "experts.gate_up_proj_blocks": torch.zeros(8, 64, 2, 8, dtype=torch.uint8)}
    with pytest.raises(ValueError, match=r"gate_up_proj_blocks: expected shape \[E, 2I, H/32, 16\]"):
        moe_layer_tensors(bad, 0)


def test_corrupt_and_missing_files(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="cannot read safetensors file"):
        load_moe_layer(path, 0)
    with pytest.raises(FileNotFoundError):
        load_moe_layer(tmp_path / "absent.safetensors", 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no .safetensors files"):
        load_moe_layer(empty, 0)
