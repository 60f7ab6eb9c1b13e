"""GPT-2's Conv1D layers (y = x·W + b, W stored [in, out]) become MXLinear like nn.Linear."""

import pytest
import torch
from torch import nn

from mxfp4.cli import main
from mxfp4.io.checkpoint import load_quantized, save_quantized
from mxfp4.io.hf import quantize_folder
from mxfp4.nn import MXLinear, quantize_model
from mxfp4.nn.convert import select_modules

CONV1D_PER_BLOCK = 4  # attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=128, n_positions=64, n_embd=64, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # less uniform than the std-0.02 init, and non-zero biases
        for p in model.parameters():
            p.mul_(1 + 3 * torch.rand(p.shape[0], *[1] * (p.dim() - 1)))
            if p.dim() == 1:
                p.add_(0.01 * torch.randn_like(p))
    return model


def _ids(seed: int, batch: int = 2, length: int = 24):
    return torch.randint(0, 128, (batch, length), generator=torch.Generator().manual_seed(seed))


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_conv1d_quantizes_its_transposed_weight_like_a_linear():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(48, 64)  # nf = out, nx = in: weight [64, 48]
    conv.bias.data.normal_()
    lin = nn.Linear(64, 48)
    lin.weight.data, lin.bias.data = conv.weight.data.T.clone(), conv.bias.data.clone()
    x = torch.randn(3, 5, 64)
    torch.testing.assert_close(conv(x), lin(x))
    a, b = MXLinear.from_linear(conv), MXLinear.from_linear(lin)
    assert (a.in_features, a.out_features) == (64, 48)
    assert torch.equal(a.weight_codes, b.weight_codes)
    assert torch.equal(a.weight_scales, b.weight_scales)
    assert torch.equal(a(x), b(x))


def test_quantize_model_converts_gpt2_conv1d_layers():
    model, ids = tiny_gpt2(), _ids(1)
    ref = _logits(model, ids)
    targets, skipped = select_modules(model)
    assert len(targets) == 2 * CONV1D_PER_BLOCK
    summary = quantize_model(model)
    assert summary.converted == 2 * CONV1D_PER_BLOCK and "lm_head" in skipped
    fc = model.transformer.h[0].mlp.c_fc
    assert isinstance(fc, MXLinear) and (fc.out_features, fc.in_features) == (256, 64)
    assert {r.shape for r in summary.layers} == {(192, 64), (64, 64), (256, 64), (64, 256)}
    assert all(10 < r.qsnr_db < 30 for r in summary.layers)
    out = _logits(model, ids)
    assert (out - ref).norm() / ref.norm() < 0.3


def test_gpt2_cli_checkpoint_reloads_with_the_python_api_logits(tmp_path, capsys):
    tiny_gpt2().save_pretrained(tmp_path / "float")
    assert main(["quantize", str(tmp_path / "float"), "-o", str(tmp_path / "q")]) == 0
    assert f"{2 * CONV1D_PER_BLOCK} layers converted" in capsys.readouterr().out
    loaded = load_quantized(tmp_path / "q")
    assert isinstance(loaded.transformer.h[1].attn.c_attn, MXLinear)
    ref = tiny_gpt2()
    quantize_model(ref)
    ids = _ids(2)
    assert torch.equal(_logits(loaded, ids), _logits(ref, ids))
    save_quantized(ref, tmp_path / "api")  # and the Python API's own checkpoint
    assert torch.equal(_logits(load_quantized(tmp_path / "api"), ids), _logits(ref, ids))
    # compressed-tensors would hand transformers [out, in] codes for an [in, out] Conv1D
    assert main(["quantize", str(tmp_path / "float"), "-o", str(tmp_path / "ct"), "--format",
                 "compressed-tensors"]) == 1
    assert "Conv1D" in capsys.readouterr().err and not (tmp_path / "ct").exists()


@pytest.mark.parametrize("method", ["mse", "gptq"])
def test_gpt2_streamed_mse_and_gptq_equal_the_python_api(tmp_path, method):
    tiny_gpt2().save_pretrained(tmp_path / "float")
    calib = [_ids(s, 4, 32) for s in (3, 4)] if method == "gptq" else None
    summary = quantize_folder(str(tmp_path / "float"), str(tmp_path / "q"), method=method,
                              calibration=calib)
    assert summary.converted == 2 * CONV1D_PER_BLOCK
    ref = tiny_gpt2()
    quantize_model(ref, method=method, calibration=calib)
    ids = _ids(5)
    assert torch.equal(_logits(load_quantized(tmp_path / "q"), ids), _logits(ref, ids))
