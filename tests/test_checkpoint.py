"""save_quantized / load_quantized: bit-identical reloads, recorded metadata, clear errors."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from mx_tiny_models import tiny_gemma3, tiny_tokens
from mxfp4.io.checkpoint import CONFIG_NAME, load_quantized, save_quantized
from mxfp4.io.hf import load_model, weight_files
from mxfp4.nn import MXLinear, quantize_model

HERE = os.path.dirname(os.path.abspath(__file__))

RELOAD = """
import sys, torch
from safetensors.torch import save_file
import mxfp4
model = mxfp4.load_quantized(sys.argv[1])
from mx_tiny_models import tiny_tokens
with torch.no_grad():
    save_file({"logits": model(tiny_tokens()).logits.contiguous()}, sys.argv[2])
"""


def _quantized(**kw):
    model = tiny_gemma3()
    quantize_model(model, **kw)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    calib = [tiny_tokens(4, 32, seed=s) for s in range(2)]
    model = _quantized(method="gptq", calibration=calib, hadamard=True)
    path = tmp_path_factory.mktemp("ckpt")
    save_quantized(model, path)
    return model, path


def test_reload_in_a_fresh_process_gives_identical_logits(saved, tmp_path):
    model, path = saved
    out = tmp_path / "logits.safetensors"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", RELOAD, str(path), str(out)], check=True, env=env,
                   capture_output=True)
    with torch.no_grad():
        ref = model(tiny_tokens()).logits
    assert torch.equal(load_file(out)["logits"], ref)


def test_reload_is_bit_identical_and_recorded(saved):
    model, path = saved
    again = load_quantized(path)
    assert set(again.state_dict()) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v) and again.state_dict()[k].dtype == v.dtype, k
    layer = again.model.layers[0].mlp.down_proj
    assert isinstance(layer, MXLinear) and layer.hadamard and layer.method == "gptq"
    config = json.load(open(path / CONFIG_NAME))
    rec = config["modules"]["model.layers.0.mlp.down_proj"]
    assert rec == {"kind": "linear", "shape": [64, 128], "axis": 1, "block_size": 32,
                   "scale_rule": "floor", "method": "gptq", "hadamard": True, "bias": False}
    assert config["aliases"] == {"lm_head.weight": "model.embed_tokens.weight"}
    assert again.lm_head.weight is again.model.embed_tokens.weight


def test_quantized_layers_cost_4_25_bits(saved):
    _, path = saved
    tensors = load_file(path / "model.safetensors")
    codes = tensors["model.layers.0.mlp.down_proj.weight_codes"]
    scales = tensors["model.layers.0.mlp.down_proj.weight_scales"]
    assert (codes.nbytes + scales.nbytes) * 8 / (64 * 128) == 4.25
    assert "model.layers.0.mlp.down_proj.weight" not in tensors and "lm_head.weight" not in tensors


def test_embeddings_and_tied_head_round_trip(tmp_path):
    model = _quantized(embeddings=True, scale_rule="ceil")
    save_quantized(model, tmp_path, max_shard_bytes=20_000)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]) > 1
    again = load_quantized(tmp_path)
    assert again.lm_head.weight_codes is again.model.embed_tokens.weight_codes
    ids = tiny_tokens()
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)


def test_load_into_a_given_float_model(saved):
    model, path = saved
    again = load_quantized(path, tiny_gemma3(seed=5))
    ids = tiny_tokens()
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)


def _copy(src, dst):
    dst.mkdir()
    for f in os.listdir(src):
        (dst / f).write_bytes((src / f).read_bytes())
    return dst


def test_truncated_file_is_reported(saved, tmp_path):
    path = _copy(saved[1], tmp_path / "c")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_quantized(path)


def test_corrupt_bytes_are_reported(saved, tmp_path):
    path = _copy(saved[1], tmp_path / "c")
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_quantized(path)


def test_corrupt_header_without_checksum_is_reported(saved, tmp_path):
    path = _copy(saved[1], tmp_path / "c")
    data = bytearray((path / "model.safetensors").read_bytes())
    data[8:20] = b"not json !!!"
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot read checkpoint file"):
        load_quantized(path, verify=False)


def test_bad_config_is_reported(saved, tmp_path):
    path = _copy(saved[1], tmp_path / "c")
    cfg = path / CONFIG_NAME
    cfg.write_text("{ broken")
    with pytest.raises(ValueError, match="corrupt"):
        load_quantized(path)
    good = json.loads((saved[1] / CONFIG_NAME).read_text())
    cfg.write_text(json.dumps({**good, "format_version": "9"}))
    with pytest.raises(ValueError, match="format_version"):
        load_quantized(path)
    del good["modules"]["model.layers.0.mlp.up_proj"]["scale_rule"]
    cfg.write_text(json.dumps(good))
    with pytest.raises(ValueError, match="lacks one of"):
        load_quantized(path)
    cfg.unlink()
    with pytest.raises(FileNotFoundError, match="not an mxfp4 checkpoint"):
        load_quantized(path)


def test_missing_and_mismatched_tensors_are_reported(saved, tmp_path):
    path = _copy(saved[1], tmp_path / "c")
    tensors = load_file(path / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight_scales"]
    save_file(tensors, path / "model.safetensors")
    cfg = json.loads((path / CONFIG_NAME).read_text())
    cfg["files"]["model.safetensors"]["bytes"] = os.path.getsize(path / "model.safetensors")
    (path / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="up_proj.weight_scales"):
        load_quantized(path, verify=False)


def test_pickle_weights_are_refused(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="never loads pickle"):
        weight_files(str(tmp_path))
    with pytest.raises(ValueError, match="pickle"):
        load_model(str(tmp_path))


def test_save_is_atomic_and_leaves_no_temp_files(saved):
    assert not [f for f in os.listdir(saved[1]) if f.startswith(".tmp")]


# -- MoE experts in the gpt-oss Hugging Face layout -----------------------------------------

def _tiny_gpt_oss():
    from mx_tiny_models import tiny_gpt_oss

    return tiny_gpt_oss(experts=4)


def test_gpt_oss_experts_export_loads_in_transformers_bit_for_bit(tmp_path):
    from transformers import GptOssForCausalLM, Mxfp4Config

    import mxfp4
    from mxfp4.io.gpt_oss_hf import save_gpt_oss_hf

    model = _tiny_gpt_oss()
    save_gpt_oss_hf(model, tmp_path, scale_rule="even")
    config = json.load(open(tmp_path / "config.json"))["quantization_config"]
    assert config["quant_method"] == "mxfp4" and "lm_head" in config["modules_to_not_convert"]
    names = set(load_file(tmp_path / "model.safetensors"))
    assert {"model.layers.1.mlp.experts.gate_up_proj_blocks", "model.layers.1.mlp.experts.down_proj_scales",
            "model.layers.1.mlp.router.weight"} <= names
    # dequantize=True: transformers' offline path (its MXFP4 kernels would come from the Hub)
    loaded = GptOssForCausalLM.from_pretrained(tmp_path, quantization_config=Mxfp4Config(dequantize=True))
    for i in range(2):
        for pname in ("gate_up_proj", "down_proj"):
            w = getattr(model.model.layers[i].mlp.experts, pname).detach()  # [E, in, out]
            ours = mxfp4.quantize(w.transpose(1, 2).contiguous(), axis=2, scale_rule="even")
            theirs = getattr(loaded.model.layers[i].mlp.experts, pname)
            assert torch.equal(theirs.float(), ours.dequantize().transpose(1, 2)), (i, pname)
    assert torch.equal(loaded.model.layers[0].self_attn.q_proj.weight.float(),
                       model.model.layers[0].self_attn.q_proj.weight)


def test_load_model_reads_a_gpt_oss_export_without_the_hub(tmp_path):
    import mxfp4
    from mxfp4.io.gpt_oss_hf import save_gpt_oss_hf
    from mxfp4.io.hf import load_model

    model = _tiny_gpt_oss()
    save_gpt_oss_hf(model, tmp_path)
    loaded, kind = load_model(tmp_path)  # what `mxfp4 eval` does; the network guard is on
    assert kind == "mxfp4-gpt-oss"
    w = model.model.layers[1].mlp.experts.down_proj.detach()  # [E, in, out]
    ours = mxfp4.quantize(w.transpose(1, 2).contiguous(), axis=2).dequantize().transpose(1, 2)
    assert torch.equal(loaded.model.layers[1].mlp.experts.down_proj.float(), ours)
    assert torch.isfinite(loaded(torch.tensor([[1, 5, 9, 3]])).logits).all()


def test_gpt_oss_export_of_our_moe_reads_back_with_the_moe_loader(tmp_path):
    from mxfp4.io.gpt_oss import load_moe_layer
    from mxfp4.io.gpt_oss_hf import save_gpt_oss_hf
    from mxfp4.nn.moe import MoE

    model = _tiny_gpt_oss()
    hf = model.model.layers[1].mlp
    ex = hf.experts
    moe = MoE.from_float(hf.router.weight.detach(), hf.router.bias.detach(),
                         ex.gate_up_proj.detach().transpose(1, 2).contiguous(),
                         ex.gate_up_proj_bias.detach(),
                         ex.down_proj.detach().transpose(1, 2).contiguous(),
                         ex.down_proj_bias.detach(), experts_per_token=2)
    model.model.layers[1].mlp = moe
    save_gpt_oss_hf(model, tmp_path)
    back = load_moe_layer(tmp_path, 1, experts_per_token=2)
    for name in ("w1_codes", "w1_scales", "w2_codes", "w2_scales", "b1", "b2", "router_weight"):
        assert torch.equal(getattr(back, name), getattr(moe, name)), name


def test_gpt_oss_export_refuses_mx_linear_layers(tmp_path):
    from mxfp4.io.gpt_oss_hf import save_gpt_oss_hf

    model = _tiny_gpt_oss()
    quantize_model(model)
    with pytest.raises(ValueError, match="only MoE experts"):
        save_gpt_oss_hf(model, tmp_path)
