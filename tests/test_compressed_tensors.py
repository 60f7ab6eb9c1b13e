"""compressed-tensors `mxfp4-pack-quantized` export, checked with that package's own code."""

import json

import pytest
import torch
from safetensors.torch import load_file

from mx_tiny_models import tiny_gemma3, tiny_tokens
from mxfp4.io.compressed_tensors import save_compressed_tensors
from mxfp4.nn import MXLinear, quantize_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_gemma3()
    with torch.no_grad():  # a zero block (scale byte 0) and a wide range of block scales
        model.model.layers[0].mlp.up_proj.weight[3, :32] = 0
        model.model.layers[1].mlp.down_proj.weight[:, :32] *= 1e-6
        model.model.layers[1].mlp.down_proj.weight[:, 32:64] *= 1e4
    quantize_model(model, scale_rule="even")
    path = tmp_path_factory.mktemp("ct")
    save_compressed_tensors(model, path)
    return model, path


def _ours(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, MXLinear)}


def test_package_compressor_decompresses_our_tensors_bit_for_bit(exported):
    from compressed_tensors.compressors import MXFP4PackedCompressor
    from compressed_tensors.quantization import QuantizationConfig

    model, path = exported
    config = QuantizationConfig.model_validate(
        json.load(open(path / "config.json"))["quantization_config"])
    assert config.format == "mxfp4-pack-quantized"
    scheme = config.config_groups["group_0"]
    tensors = load_file(path / "model.safetensors")
    for name, layer in _ours(model).items():
        state = {"weight_packed": tensors[f"{name}.weight_packed"],
                 "weight_scale": tensors[f"{name}.weight_scale"]}
        assert torch.equal(state["weight_packed"], layer.weight_codes)
        assert torch.equal(state["weight_scale"], layer.weight_scales)
        theirs = MXFP4PackedCompressor.decompress(state, scheme)["weight"]
        assert theirs.dtype == torch.bfloat16  # their decoder works in bf16: exact for E2M1 * 2^e
        assert torch.equal(theirs.float(), layer.dequantized_weight()), name


def test_transformers_loads_the_export_through_compressed_tensors(exported):
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    model, path = exported
    loaded = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=CompressedTensorsConfig(dequantize=True))
    for name, layer in _ours(model).items():
        assert torch.equal(loaded.get_submodule(name).weight.float(), layer.dequantized_weight())
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight  # tie restored by HF
    ids = tiny_tokens()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)


def test_config_lists_unquantized_linears_and_nothing_else_is_renamed(exported):
    model, path = exported
    qc = json.load(open(path / "config.json"))["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["ignore"] == ["lm_head"]
    weights = qc["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["type"], weights["group_size"]) == (4, "float", 32)
    keys = set(load_file(path / "model.safetensors"))
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys
    assert not any(k.endswith(("weight_codes", "weight_scales")) for k in keys)


def test_scale_decoding_disagreement_is_documented():
    # OCP: E8M0 0xFF is NaN; compressed-tensors computes 2 ** (s - 127) in bf16, giving +inf.
    # Our exports never contain 0xFF (NaN/Inf weights are refused before quantizing).
    from compressed_tensors.compressors.mx_utils import decompress_mx_scale

    from mxfp4.format import e8m0_to_float32

    s = torch.tensor([0, 127, 254, 255], dtype=torch.uint8)
    theirs, ours = decompress_mx_scale(s).float(), e8m0_to_float32(s)
    assert torch.equal(theirs[:3], ours[:3])
    assert torch.isinf(theirs[3]) and torch.isnan(ours[3])


def test_unexportable_models_are_refused(tmp_path):
    had = tiny_gemma3()
    quantize_model(had, hadamard=True)
    with pytest.raises(ValueError, match="Hadamard"):
        save_compressed_tensors(had, tmp_path / "a")
    emb = tiny_gemma3()
    quantize_model(emb, embeddings=True)
    with pytest.raises(ValueError, match="Linear layers only"):
        save_compressed_tensors(emb, tmp_path / "b")
    with pytest.raises(ValueError, match="no MXLinear"):
        save_compressed_tensors(tiny_gemma3(), tmp_path / "c")
