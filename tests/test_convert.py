"""quantize_model on a tiny randomly initialised transformers model (no download)."""

import pytest
import torch
from torch import nn

from mx_tiny_models import tiny_gemma3, tiny_tokens
from mxfp4.nn import MXEmbedding, MXLinear, quantize_model
from mxfp4.nn.convert import matches, model_bytes

LINEARS_PER_BLOCK = 7  # q, k, v, o, gate, up, down


def _kinds(model):
    return {n: type(m).__name__ for n, m in model.named_modules()}


def test_defaults_convert_block_linears_and_keep_embeddings_head_norms():
    model = tiny_gemma3()
    summary = quantize_model(model)
    kinds = _kinds(model)
    assert summary.converted == 2 * LINEARS_PER_BLOCK
    assert all(kinds[r.name] == "MXLinear" for r in summary.layers)
    assert kinds["lm_head"] == "Linear" and kinds["model.embed_tokens"] != "MXEmbedding"
    assert "RMSNorm" in kinds["model.norm"]
    assert summary.skipped == {"model.embed_tokens": "embedding (pass embeddings=True / --embeddings)",
                               "lm_head": "LM head (kept by default)"}
    # a quantized layer costs 4.25 bits per weight: codes + one byte per 32
    for r in summary.layers:
        n, k = r.shape
        assert r.bytes_after == n * k // 2 + n * k // 32 and r.bytes_before == 4 * n * k
        assert 10 < r.qsnr_db < 30
    saved = sum(r.bytes_before - r.bytes_after for r in summary.layers)
    assert summary.bytes_before - summary.bytes_after == saved
    assert summary.bytes_after == model_bytes(model)


def test_quantized_model_runs_and_stays_close():
    ids = tiny_tokens()
    model = tiny_gemma3()
    with torch.no_grad():
        ref = model(ids).logits
        quantize_model(model)
        out = model(ids).logits
    assert out.shape == ref.shape
    assert (out - ref).norm() / ref.norm() < 0.5


def test_include_and_exclude_patterns():
    model = tiny_gemma3()
    summary = quantize_model(model, include=["*.mlp.*"], exclude=["re:layers\\.1\\..*down"])
    names = {r.name for r in summary.layers}
    assert names == {"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj",
                     "model.layers.0.mlp.down_proj", "model.layers.1.mlp.gate_proj",
                     "model.layers.1.mlp.up_proj"}
    assert summary.skipped["model.layers.1.mlp.down_proj"] == "excluded by pattern"
    assert isinstance(model.model.layers[0].self_attn.q_proj, nn.Linear)
    assert matches("a.b.c", ["a.*"]) and not matches("a.b.c", ["b.*"]) and matches("a.b", ["re:^a"])


def test_lm_head_only_when_named_exactly():
    model = tiny_gemma3()
    summary = quantize_model(model, include=["lm_head"])
    assert [r.name for r in summary.layers] == ["lm_head"] and isinstance(model.lm_head, MXLinear)


def test_routers_and_odd_sizes_are_kept():
    class Moe(nn.Module):
        def __init__(self):
            super().__init__()
            self.router = nn.Linear(64, 4)
            self.gate = nn.Linear(64, 4)
            self.proj = nn.Linear(64, 64)
            self.odd = nn.Linear(40, 64)

    model = nn.Sequential(Moe())
    summary = quantize_model(model)
    assert [r.name for r in summary.layers] == ["0.proj"]
    assert summary.skipped["0.router"] == summary.skipped["0.gate"] == "MoE router (kept by default)"
    assert "not a multiple of 32" in summary.skipped["0.odd"]


def test_embeddings_with_tied_head_share_codes():
    ids = tiny_tokens()
    model = tiny_gemma3()
    with torch.no_grad():
        ref = model(ids).logits
    summary = quantize_model(model, embeddings=True)
    emb, head = model.model.embed_tokens, model.lm_head
    assert isinstance(emb, MXEmbedding) and isinstance(head, MXLinear)
    assert head.weight_codes is emb.weight_codes  # one table, stored once
    assert [r.kind for r in summary.layers][:2] == ["embedding", "tied"]
    assert summary.bytes_after < summary.bytes_before / 6
    with torch.no_grad():
        out = model(ids).logits
    assert (out - ref).norm() / ref.norm() < 0.6


def test_methods():
    calib = [tiny_tokens(4, 32, seed=s) for s in range(2)]
    mse = tiny_gemma3()
    assert quantize_model(mse, method="mse").scale_rule == "mse"
    assert mse.model.layers[0].mlp.up_proj.scale_rule == "mse"
    gptq = tiny_gemma3()
    summary = quantize_model(gptq, method="gptq", calibration=calib, hadamard=True)
    layer = gptq.model.layers[1].self_attn.o_proj
    assert summary.converted == 14 and layer.method == "gptq" and layer.hadamard
    progress = []
    quantize_model(tiny_gemma3(), progress=lambda n, d, t: progress.append((d, t)))
    assert progress[-1] == (14, 14)


def test_gptq_is_closer_to_float_outputs_than_rtn():
    ids = torch.cat([tiny_tokens(4, 32, seed=s) for s in range(20, 24)])
    calib = [tiny_tokens(8, 32, seed=s) for s in range(4)]
    with torch.no_grad():
        ref = tiny_gemma3()(ids).logits
        errs = {}
        for method, kw in (("rtn", {}), ("gptq", {"calibration": calib})):
            model = tiny_gemma3()
            quantize_model(model, method=method, **kw)
            errs[method] = (model(ids).logits - ref).norm()
    assert errs["gptq"] < errs["rtn"]


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "awq"}, "method"),
    ({"method": "gptq"}, "calibration"),
    ({"method": "mse", "scale_rule": "floor"}, "mse"),
    ({"scale_rule": "round"}, "scale_rule"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_model(tiny_gemma3(), **kwargs)
