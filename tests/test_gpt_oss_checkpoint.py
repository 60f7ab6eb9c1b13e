"""Reading whole GPT-OSS checkpoints (mxfp4.io.gpt_oss_checkpoint): both published layouts stream
the same canonical tensors, and every kind of bad checkpoint is one clear error."""

import json
import os
import shutil

import mx_tiny_models
import pytest
import torch
from safetensors.torch import load_file, save_file

import mxfp4
from mxfp4.io.gpt_oss_checkpoint import (canonical_shapes, iter_tensors, locate, read_config,
                                         save_gpt_oss_original)
from mxfp4.io.gpt_oss_hf import save_gpt_oss_hf


def tiny_gpt_oss(dtype=torch.float32):
    return mx_tiny_models.tiny_gpt_oss(all_weights=True, dtype=dtype)


@pytest.fixture(scope="module")
def model():
    return tiny_gpt_oss()


@pytest.fixture(scope="module")
def folders(model, tmp_path_factory):
    """(HF export, original-layout copy of the same weights)."""
    root = tmp_path_factory.mktemp("gpt_oss")
    save_gpt_oss_hf(model, root / "hf")
    save_gpt_oss_original(root / "hf", root / "original")
    return root / "hf", root / "original"


def stream(path, **kw) -> dict:
    out = {}
    for name, t in iter_tensors(path, read_config(path, kw.get("layout")), **kw):
        assert name not in out, name
        out[name] = t
    return out


def copy(folder, tmp_path, name="copy"):
    return shutil.copytree(folder, tmp_path / name)


def rewrite(file, change):
    """Apply change(dict of tensors) to one safetensors file."""
    tensors = load_file(file)
    change(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def test_both_layouts_stream_identical_canonical_tensors(model, folders):
    hf, original = folders
    assert read_config(hf) == read_config(original)
    calls = []
    a = stream(hf, progress=lambda done, total: calls.append((done, total)))
    b = stream(original)
    shapes = canonical_shapes(read_config(hf))
    assert set(a) == set(b) == set(shapes) and calls[-1] == (len(shapes), len(shapes))
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
        assert tuple(a[name].shape) == shapes[name], name
    attn = model.model.layers[1].self_attn
    assert torch.equal(a["blocks.1.attn.qkv.weight"],
                       torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
    assert torch.equal(a["blocks.1.attn.sinks"], attn.sinks)
    assert torch.equal(a["unembedding.weight"], model.lm_head.weight)
    w = model.model.layers[0].mlp.experts.down_proj.detach()  # [E, in, out]
    blocks, scales = mxfp4.quantize(w.transpose(1, 2).contiguous(), axis=2).to_gpt_oss()
    assert torch.equal(a["blocks.0.mlp.w2.blocks"], blocks)
    assert torch.equal(a["blocks.0.mlp.w2.scales"], scales)


def test_read_config_gives_the_model_fields(folders):
    c = read_config(folders[0])
    assert c == dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_experts=8,
                     experts_per_token=2, intermediate_size=64, head_dim=32,
                     num_attention_heads=2, num_key_value_heads=1, sliding_window=8,
                     layer_types=["sliding_attention", "full_attention"], rope_theta=150000.0,
                     rope_scaling_factor=32.0, rope_ntk_alpha=1.0, rope_ntk_beta=32.0,
                     initial_context_length=4096, swiglu_limit=7.0, rms_norm_eps=1e-5,
                     eos_token_id=None, pad_token_id=None)


def test_read_config_of_the_published_config_files(tmp_path):
    # the fields of openai/gpt-oss-20b's config.json and original/config.json
    (tmp_path / "original").mkdir()
    hf = {"model_type": "gpt_oss", "vocab_size": 201088, "hidden_size": 2880,
          "num_hidden_layers": 24, "num_local_experts": 32, "num_experts_per_tok": 4,
          "experts_per_token": 4, "intermediate_size": 2880, "head_dim": 64,
          "num_attention_heads": 64, "num_key_value_heads": 8, "sliding_window": 128,
          "layer_types": ["sliding_attention", "full_attention"] * 12, "rope_theta": 150000,
          "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                           "original_max_position_embeddings": 4096, "rope_type": "yarn",
                           "truncate": False},
          "swiglu_limit": 7.0, "rms_norm_eps": 1e-05, "eos_token_id": 200002,
          "pad_token_id": 199999, "initial_context_length": 4096,
          "quantization_config": {"quant_method": "mxfp4"}}
    original = {"num_hidden_layers": 24, "num_experts": 32, "experts_per_token": 4,
                "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880,
                "swiglu_limit": 7.0, "head_dim": 64, "num_attention_heads": 64,
                "num_key_value_heads": 8, "sliding_window": 128, "initial_context_length": 4096,
                "rope_theta": 150000, "rope_scaling_factor": 32.0, "rope_ntk_alpha": 1,
                "rope_ntk_beta": 32}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    (tmp_path / "original" / "config.json").write_text(json.dumps(original))
    a, b = read_config(tmp_path), read_config(tmp_path, layout="original")
    assert a.pop("eos_token_id") == 200002 and a.pop("pad_token_id") == 199999
    assert b.pop("eos_token_id") is None and b.pop("pad_token_id") is None
    assert a == b and a["layer_types"][:2] == ["sliding_attention", "full_attention"]
    assert isinstance(a["rope_theta"], float) and a["rope_ntk_alpha"] == 1.0


def test_a_folder_with_both_layouts_reads_hf_unless_told(folders, tmp_path):
    hf, original = folders
    both = copy(hf, tmp_path, "both")
    shutil.copytree(original, both / "original")
    assert locate(both)[:2] == ("hf", str(both))
    assert locate(both, "original")[:2] == ("original", str(both / "original"))
    assert locate(original)[0] == "original"  # the original/ folder itself
    a, b = stream(both), stream(both, layout="original")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_sharded_indexed_hf_export_streams_the_same(model, folders, tmp_path):
    save_gpt_oss_hf(model, tmp_path / "sharded", max_shard_bytes=20_000)
    shards = [f for f in os.listdir(tmp_path / "sharded") if f.endswith(".safetensors")]
    assert len(shards) > 3 and (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    a, b = stream(folders[0]), stream(tmp_path / "sharded")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_tensors_arrive_on_the_device(folders):
    for name, t in iter_tensors(folders[1], read_config(folders[1]), device=torch.device("cpu")):
        assert t.device.type == "cpu"


# -- bad checkpoints: one ValueError naming the file and the tensor --------------------------

def test_missing_tensor(folders, tmp_path):
    bad = copy(folders[0], tmp_path)
    rewrite(bad / "model.safetensors", lambda t: t.pop("model.layers.1.self_attn.sinks"))
    with pytest.raises(ValueError, match=r"copy: tensor model\.layers\.1\.self_attn\.sinks is missing"):
        stream(bad)


def test_wrong_shape(folders, tmp_path):
    bad = copy(folders[1], tmp_path)
    rewrite(bad / "model.safetensors", lambda t: t.update({"block.0.mlp.gate.bias": torch.zeros(7)}))
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor block\.0\.mlp\.gate\.bias "
                                         r"has shape \(7,\), but .*config\.json gives \(8,\)"):
        stream(bad)


def test_unexpected_tensor(folders, tmp_path):
    bad = copy(folders[0], tmp_path)
    rewrite(bad / "model.safetensors", lambda t: t.update({"model.layers.0.extra": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"model\.safetensors: unexpected tensor model\.layers\.0\.extra"):
        stream(bad)


def test_config_that_disagrees_with_the_weights(folders, tmp_path):
    bad = copy(folders[0], tmp_path)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "num_local_experts": 6}))
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor model\.layers\.\d\.mlp\..* "
                                         r"has shape \(8, .*config\.json gives \(6, "):
        stream(bad)
    (bad / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1,
                                                 "layer_types": ["sliding_attention"]}))
    with pytest.raises(ValueError, match=r"unexpected tensor model\.layers\.1\..*config\.json describes"):
        stream(bad)


def test_truncated_shard(folders, tmp_path):
    bad = copy(folders[1], tmp_path)
    file = bad / "model.safetensors"
    os.truncate(file, file.stat().st_size - 100)
    with pytest.raises(ValueError, match=r"copy/model\.safetensors: truncated or corrupt"):
        stream(bad)


def test_corrupt_shard_header(folders, tmp_path):
    bad = copy(folders[0], tmp_path)
    with open(bad / "model.safetensors", "r+b") as f:
        f.seek(8)
        f.write(b"#garbage#")
    with pytest.raises(ValueError, match=r"copy/model\.safetensors: truncated or corrupt"):
        stream(bad)


def test_nan_scale_byte_in_an_expert(folders, tmp_path):
    bad = copy(folders[1], tmp_path)

    def poison(t):
        t["block.1.mlp.mlp2_weight.scales"][3, 5, 1] = 0xFF

    rewrite(bad / "model.safetensors", poison)
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor block\.1\.mlp\.mlp2_weight\."
                                         r"scales has scale byte 0xFF \(NaN\) at expert 3, row 5"):
        stream(bad)


def test_nan_in_a_float_tensor(folders, tmp_path):
    bad = copy(folders[0], tmp_path)
    rewrite(bad / "model.safetensors", lambda t: t["model.norm.weight"].__setitem__(2, float("nan")))
    with pytest.raises(ValueError, match=r"tensor model\.norm\.weight holds NaN or Inf"):
        stream(bad)


def test_bf16_experts_ask_for_mxfp4_quantize(tmp_path):
    tiny_gpt_oss(torch.bfloat16).save_pretrained(tmp_path)  # what a fine-tune looks like
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor model\.layers\.0\.mlp\.experts\."
                                         r"(gate_up|down)_proj holds BF16 experts .*`mxfp4 quantize`"):
        stream(tmp_path)


def test_a_bad_last_shard_stops_the_stream_before_the_first_tensor(model, tmp_path):
    save_gpt_oss_hf(model, tmp_path / "sharded", max_shard_bytes=20_000)
    last = sorted((tmp_path / "sharded").glob("model-*.safetensors"))[-1]
    os.truncate(last, last.stat().st_size - 1)
    tensors = iter_tensors(tmp_path / "sharded", read_config(tmp_path / "sharded"))
    with pytest.raises(ValueError, match=last.name):
        next(tensors)


def test_a_missing_shard_named_by_the_index(model, tmp_path):
    save_gpt_oss_hf(model, tmp_path / "sharded", max_shard_bytes=20_000)
    last = sorted((tmp_path / "sharded").glob("model-*.safetensors"))[-1]
    last.unlink()
    with pytest.raises(ValueError, match=f"lists shard '{last.name}', which is missing"):
        stream(tmp_path / "sharded")


def test_not_a_gpt_oss_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="does not describe a GPT-OSS model"):
        read_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="no GPT-OSS config.json"):
        read_config(tmp_path, "original")


def test_both_layouts_load_to_identical_gpt_oss_models(folders):
    from mxfp4.models import GptOss

    a, b = (GptOss.from_pretrained(f, device="cpu", dtype=torch.float32, progress=False)
            for f in folders)
    ids = torch.tensor([5, 9, 2, 77, 31, 4, 4, 100, 63, 12])
    assert torch.equal(a(ids), b(ids))


def test_save_pretrained_writes_what_from_pretrained_reads(tmp_path):
    from mxfp4.models import GptOss, GptOssConfig

    config = GptOssConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_experts=4,
                          experts_per_token=2, intermediate_size=64, head_dim=16,
                          num_attention_heads=4, num_key_value_heads=2, sliding_window=4)
    model = GptOss.from_config(config, device="cpu", dtype=torch.float32, seed=3)
    folder = model.save_pretrained(tmp_path / "oss")
    back = GptOss.from_pretrained(folder, device="cpu", dtype=torch.float32, progress=False)
    ids = torch.arange(9)[None] * 7 % 64
    assert torch.equal(back(ids), model(ids))
    with pytest.raises(ValueError, match="is not empty"):
        model.save_pretrained(folder)
