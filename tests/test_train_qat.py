"""Quantization-aware training (mxfp4.train): QAT layers off = nn.Linear exactly, straight-through
gradients, convert bit-identical to the QAT forward, save / load round trips (save_quantized, the
gpt-oss layout), a tiny GptOss whose loss falls, bad inputs. CPU, float32 unless said."""

import copy

import pytest
import torch
from torch import nn

import mxfp4
from mxfp4.models import GptOss, GptOssConfig
from mxfp4.nn import MXLinear, MoE
from mxfp4.train import (QATLinear, QATMoE, convert, fake_quantize, moe_float, prepare_qat,
                         save_gpt_oss, set_quantization)


def _linear(n_in=64, n_out=48, bias=True, seed=0):
    torch.manual_seed(seed)
    layer = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(1 + 3 * torch.rand(n_out, 1))  # blocks of different magnitudes
    return layer


def _fq(w, rule="floor", block=32):
    return mxfp4.quantize(w.detach(), axis=-1, block_size=block, scale_rule=rule).dequantize()


def _moe(E=4, H=64, I=32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, std=1.0):
        return torch.randn(shape, generator=g) * std

    return MoE.from_float(r(E, H), r(E, std=0.1), r(E, 2 * I, H, std=H ** -0.5), r(E, 2 * I, std=0.1),
                          r(E, H, I, std=I ** -0.5), r(E, H, std=0.1), experts_per_token=2)


# -- quantization off: nn.Linear exactly ---------------------------------------------------------

def test_switched_off_qat_linear_is_nn_linear_exactly():
    ref = _linear()
    model = nn.Sequential(copy.deepcopy(ref), nn.GELU())
    prepare_qat(model)
    assert isinstance(model[0], QATLinear) and set_quantization(model, False) == 1
    x = torch.randn(3, 5, 64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y = ref(x1), model[0](x2)
    assert torch.equal(y, y_ref)
    g = torch.randn_like(y)
    y_ref.backward(g)
    y.backward(g)
    assert torch.equal(x2.grad, x1.grad)
    assert torch.equal(model[0].weight.grad, ref.weight.grad)
    assert torch.equal(model[0].bias.grad, ref.bias.grad)
    set_quantization(model, True)
    assert not torch.equal(model[0](x), y_ref)  # and on again: the MXFP4 weight


def test_switched_off_qat_moe_runs_the_float_experts():
    moe = _moe()
    qat = QATMoE.from_moe(moe)
    qat.enabled = False
    x = torch.randn(10, 64)
    want = moe_float(x, qat.router_weight, qat.router_bias, qat.w1, qat.b1, qat.w2, qat.b2, 2)
    assert torch.equal(qat(x), want)


# -- forward and straight-through gradients ------------------------------------------------------

@pytest.mark.parametrize("rule", ["floor", "ceil", "even", "mse"])
def test_forward_uses_the_mxfp4_weight(rule):
    layer = QATLinear.from_linear(_linear(), scale_rule=rule)
    x = torch.randn(7, 64)
    want = x @ _fq(layer.weight, rule).T + layer.bias
    assert torch.equal(layer(x), want)


def test_straight_through_gradients():
    layer = QATLinear.from_linear(_linear())
    with torch.no_grad():  # block 0 of row 0: max 1.9 is clipped to 1.5 by the floor scale
        layer.weight[0, :32] = torch.linspace(-0.3, 0.3, 32)
        layer.weight[0, 5] = 1.9
    assert _fq(layer.weight)[0, 5] == 1.5
    x = torch.randn(6, 64, requires_grad=True)
    g = torch.randn(6, 48)
    layer(x).backward(g)
    wq = _fq(layer.weight).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    (xr @ wq.T + layer.bias.detach()).backward(g)
    assert torch.equal(layer.weight.grad, wq.grad)  # dL/dW = dL/dW_q, clipped element included
    assert layer.weight.grad[0, 5] != 0
    assert torch.equal(x.grad, xr.grad)  # the input's gradient goes through W_q
    assert torch.equal(layer.bias.grad, g.sum(0))


def test_w4a4_rounds_the_input_and_passes_its_gradient():
    layer = QATLinear.from_linear(_linear(), activations=True)
    x = torch.randn(4, 64, requires_grad=True)
    y = layer(x)
    assert torch.equal(y, _fq(x) @ _fq(layer.weight).T + layer.bias)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(4, 48) @ _fq(layer.weight))


def test_bf16_master_weights_get_bf16_gradients():
    layer = QATLinear.from_linear(_linear(), master_dtype=torch.bfloat16)
    assert layer.weight.dtype == layer.bias.dtype == torch.bfloat16
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.weight.grad.dtype == torch.bfloat16 and layer.weight.grad.abs().sum() > 0


# -- convert: bit-identical ----------------------------------------------------------------------

@pytest.mark.parametrize("rule,hadamard,bias,dtype", [
    ("floor", False, True, torch.float32), ("ceil", False, False, torch.float32),
    ("even", True, True, torch.float32), ("mse", False, True, torch.float32),
    ("floor", True, True, torch.bfloat16)])
def test_convert_is_bit_identical_to_the_qat_forward(rule, hadamard, bias, dtype):
    model = nn.Sequential(_linear(bias=bias), nn.ReLU(), _linear(48, 64, bias=bias, seed=1))
    prepare_qat(model, scale_rule=rule, hadamard=hadamard, block_size=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):  # move the master weights off their starting point
        opt.zero_grad()
        model(torch.randn(8, 64)).square().mean().backward()
        opt.step()
    x = torch.randn(2, 9, 64, dtype=dtype)
    with torch.no_grad():
        y = model(x)
    assert convert(model) is model
    assert all(isinstance(model[i], MXLinear) for i in (0, 2))
    assert model[0].hadamard == hadamard and model[0].block_size == 16
    assert model[0].scale_rule == rule
    with torch.no_grad():
        assert torch.equal(model(x), y)


def test_qat_moe_starts_at_the_mxfp4_moe_and_converts_bit_identically():
    moe = _moe()
    qat = QATMoE.from_moe(moe)
    x = torch.randn(2, 12, 64)
    with torch.no_grad():
        assert torch.equal(qat(x), moe(x))  # re-rounding MXFP4 values is lossless
    opt = torch.optim.SGD(qat.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        qat(x).square().mean().backward()
        opt.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in qat.parameters())
    with torch.no_grad():
        y = qat(x)
        assert not torch.equal(y, moe(x))
        back = qat.to_mx()
        assert isinstance(back, MoE) and torch.equal(back(x), y)


def test_w4a4_convert_needs_strict_false():
    model = nn.Sequential(_linear())
    prepare_qat(model, activations=True)
    with pytest.raises(ValueError, match="W4A4.*strict=False"):
        convert(model)
    convert(model, strict=False)
    assert isinstance(model[0], MXLinear)


def test_fake_quantize_is_the_codec_round_trip():
    w = torch.randn(33, 64) * 3
    out = fake_quantize(w, axis=0, block_size=8, scale_rule="even")
    want = mxfp4.quantize(w, axis=0, block_size=8, scale_rule="even").dequantize()
    assert out.dtype == torch.float32 and torch.equal(out, want)


# -- a Hugging Face model: selection, training, save_quantized / load_quantized ------------------

def test_hf_model_trains_converts_and_round_trips_save_quantized(tmp_path):
    from mx_tiny_models import tiny_gemma3, tiny_tokens

    model = tiny_gemma3()
    summary = prepare_qat(model, exclude=["*.o_proj"])
    assert summary.linears and all(isinstance(model.get_submodule(n), QATLinear) for n in summary.linears)
    assert summary.skipped["lm_head"] == "LM head (kept by default)"
    assert summary.skipped["model.layers.0.self_attn.o_proj"] == "excluded by pattern"
    assert type(model.model.layers[0].self_attn.o_proj) is nn.Linear
    ids = tiny_tokens(length=16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    with torch.no_grad():
        qat_logits = model(input_ids=ids).logits
        convert(model)
        assert torch.equal(model(input_ids=ids).logits, qat_logits)
    mxfp4.save_quantized(model, tmp_path / "q")
    loaded = mxfp4.load_quantized(tmp_path / "q")
    assert isinstance(loaded.model.layers[1].mlp.down_proj, MXLinear)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, qat_logits)


# -- GptOss: MXFP4 experts trained, converted, written in the gpt-oss layout ---------------------

def _gpt_oss(layers=2):
    config = GptOssConfig(vocab_size=96, hidden_size=64, num_hidden_layers=layers, num_experts=4,
                          experts_per_token=2, intermediate_size=64, head_dim=16,
                          num_attention_heads=4, num_key_value_heads=2, sliding_window=8)
    return GptOss.from_config(config, device="cpu", dtype=torch.float32, seed=0)


def _lm_loss(model, ids):
    logits = model(ids)
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                       ids[:, 1:].reshape(-1))


def test_gpt_oss_experts_train_and_reload_from_the_gpt_oss_layout(tmp_path):
    # one layer, attention kept float: the loss reaches the experts without a backward pass
    # through GptOss's attention
    model = _gpt_oss(layers=1)
    ids = torch.randint(0, 96, (4, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(ids)
    summary = prepare_qat(model, exclude=["*.attn.*"])
    assert summary.moes == ["blocks.0.mlp.moe"] and not summary.linears
    assert isinstance(model.blocks[0].mlp.moe, QATMoE)
    with torch.no_grad():  # the MXFP4 experts, re-rounded: the QAT model starts where it was
        assert torch.equal(model(ids), before)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = _lm_loss(model, ids)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    with torch.no_grad():
        qat_logits = model(ids)
        convert(model)
        assert isinstance(model.blocks[0].mlp.moe, MoE)
        assert torch.equal(model(ids), qat_logits)
    save_gpt_oss(model, tmp_path / "oss")
    loaded = GptOss.from_pretrained(tmp_path / "oss", device="cpu", dtype=torch.float32, progress=False)
    with torch.no_grad():
        assert torch.equal(loaded(ids), qat_logits)


def test_gpt_oss_with_mxfp4_attention_reloads_with_quantize_attention(tmp_path):
    model = _gpt_oss()
    summary = prepare_qat(model, include=["*.attn.*", "unembedding", "*.moe"])
    assert "unembedding" in summary.linears and len(summary.moes) == 2
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # stand-in for training: move every master weight
                p.add_(torch.randn_like(p) * 0.01)
    ids = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        qat_logits = model(ids)
    convert(model)
    save_gpt_oss(model, tmp_path / "oss")
    loaded = GptOss.from_pretrained(tmp_path / "oss", device="cpu", dtype=torch.float32,
                                    progress=False, quantize_attention="mxfp4")
    with torch.no_grad():
        assert torch.equal(model(ids), qat_logits)
        assert torch.equal(loaded(ids), qat_logits)


def test_gpt_oss_layout_refuses_unconverted_or_mixed_models(tmp_path):
    model = _gpt_oss()
    prepare_qat(model, exclude=["*.attn.*"])
    with pytest.raises(ValueError, match="convert"):
        save_gpt_oss(model, tmp_path / "a")
    model = _gpt_oss()
    prepare_qat(model)  # attention quantized, the unembedding (LM head) kept float
    convert(model)
    with pytest.raises(ValueError, match="all MXLinear or all float"):
        save_gpt_oss(model, tmp_path / "b")
    with pytest.raises(TypeError, match="GptOss"):
        save_gpt_oss(nn.Linear(2, 2), tmp_path / "c")


# -- bad inputs ----------------------------------------------------------------------------------

def test_a_model_without_linear_layers_is_an_error():
    with pytest.raises(ValueError, match="no nn.Linear layer or mxfp4.nn.MoE.*has none"):
        prepare_qat(nn.Sequential(nn.ReLU(), nn.LayerNorm(8)))
    with pytest.raises(ValueError, match="no nn.Linear.*excluded by pattern"):
        prepare_qat(nn.Sequential(nn.Linear(32, 4)), exclude=["0"])
    with pytest.raises(ValueError, match="lone layer"):
        prepare_qat(nn.Linear(32, 4))


def test_a_block_size_that_does_not_divide_a_layer_is_an_error():
    model = nn.Sequential(nn.Linear(64, 48), nn.Linear(48, 8))
    with pytest.raises(ValueError, match="block_size 32 does not divide layer '1'"):
        prepare_qat(model)
    assert type(model[0]) is nn.Linear  # nothing swapped
    with pytest.raises(ValueError, match="power of two"):
        prepare_qat(model, block_size=24)
    with pytest.raises(ValueError, match="MoE experts use blocks of 32"):
        prepare_qat(_gpt_oss(layers=1), block_size=16, exclude=["*.attn.*"])


def test_bad_options_are_errors():
    model = nn.Sequential(nn.Linear(64, 8))
    with pytest.raises(ValueError, match="scale_rule must be one of"):
        prepare_qat(model, scale_rule="nearest")
    with pytest.raises(ValueError, match="master_dtype"):
        prepare_qat(model, master_dtype=torch.float16)
    with pytest.raises(TypeError, match="nn.Module"):
        prepare_qat("model")
    with pytest.raises(ValueError, match="run mxfp4.train.prepare_qat first"):
        convert(model)
    with pytest.raises(ValueError, match="backend must be one of"):
        QATMoE.from_moe(_moe())(torch.randn(2, 64), backend="cuda")
    with pytest.raises(ValueError, match="expects input"):
        QATMoE.from_moe(_moe())(torch.randn(2, 63))
