"""GptOss(quantize_attention="mxfp4"): the attention projections (qkv, out) and the unembedding
are quantized to MXFP4 as they load (round to nearest, `even` scale rule), 4.25 bits per weight;
the logits are those of the float model with exactly those weights dequantized, close to the
float model's, the KV cache still changes nothing, and a bad value is refused before loading.

Tiny random configs on the CPU."""

import pytest
import torch
from torch import nn

import mxfp4
from mxfp4.models import GptOss, GptOssConfig
from mxfp4.models.gpt_oss_weights import ATTENTION_SCALE_RULE, random_tensors
from mxfp4.nn import MXLinear

WINDOW = 8
TINY = dict(vocab_size=96, hidden_size=64, num_hidden_layers=3, num_experts=8, experts_per_token=2,
            intermediate_size=64, head_dim=16, num_attention_heads=4, num_key_value_heads=2,
            sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention", "sliding_attention"])
QUANTIZED = ["blocks.0.attn.qkv", "blocks.0.attn.out", "blocks.1.attn.qkv", "blocks.1.attn.out",
             "blocks.2.attn.qkv", "blocks.2.attn.out", "unembedding"]


def _rel(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _prompt(n, seed, vocab=TINY["vocab_size"]):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def models():
    config = GptOssConfig(**TINY)
    tensors = dict(random_tensors(config, torch.device("cpu"), torch.float32, seed=3))
    float_model = GptOss.from_tensors(config, tensors.items(), device="cpu", dtype=torch.float32)
    mx_model = GptOss.from_tensors(config, tensors.items(), device="cpu", dtype=torch.float32,
                                   quantize_attention="mxfp4")
    return config, tensors, float_model, mx_model


def test_attention_and_unembedding_hold_mxfp4_codes_at_4_25_bits(models):
    config, tensors, float_model, mx_model = models
    assert ATTENTION_SCALE_RULE == "even"
    assert float_model.quantize_attention is None and mx_model.quantize_attention == "mxfp4"
    modules = dict(mx_model.named_modules())
    for path in QUANTIZED:
        layer, w = modules[path], tensors[path + ".weight"]
        assert isinstance(layer, MXLinear) and isinstance(dict(float_model.named_modules())[path], nn.Linear)
        out_features, in_features = w.shape
        assert layer.weight_codes.dtype == torch.uint8 and layer.weight_scales.dtype == torch.uint8
        assert layer.weight_codes.shape == (out_features, in_features // 2)  # two E2M1 codes a byte
        assert layer.weight_scales.shape == (out_features, in_features // 32)  # one E8M0 per 32
        bits = 8 * (layer.weight_codes.numel() + layer.weight_scales.numel()) / w.numel()
        assert bits == 4.25
        assert not hasattr(layer, "weight")  # no float copy kept
        if path != "unembedding":  # the biases stay in the model's dtype, exactly as loaded
            assert layer.bias.dtype == torch.float32 and torch.equal(layer.bias, tensors[path + ".bias"])
        else:
            assert layer.bias is None
        # the codes are round to nearest of the loaded weight with the `even` scale rule
        expected = mxfp4.quantize(w, axis=1, scale_rule="even")
        assert torch.equal(layer.weight_codes, expected.codes)
        assert torch.equal(layer.weight_scales, expected.scales)
    # everything else is untouched: experts, embedding, norms, sinks
    assert isinstance(mx_model.embedding, nn.Embedding) and torch.equal(
        mx_model.embedding.weight, float_model.embedding.weight)
    n_linear = sum(isinstance(m, nn.Linear) for m in mx_model.modules())
    assert n_linear == 0 and sum(isinstance(m, MXLinear) for m in mx_model.modules()) == len(QUANTIZED)
    float_bytes = sum(tensors[p + ".weight"].numel() * 2 for p in QUANTIZED)  # as bf16
    mx_bytes = sum(dict(mx_model.named_buffers())[p + ".weight_" + k].numel()
                   for p in QUANTIZED for k in ("codes", "scales"))
    assert mx_bytes / float_bytes == 4.25 / 16


def test_logits_are_the_dequantized_float_model_and_close_to_the_float_model(models):
    config, tensors, float_model, mx_model = models
    # the float model with exactly the quantized weights, dequantized: the same logits
    deq = {n: (mxfp4.quantize(t, axis=1, scale_rule="even").dequantize(torch.float32)
               if n.endswith(("attn.qkv.weight", "attn.out.weight")) or n == "unembedding.weight" else t)
           for n, t in tensors.items()}
    reference = GptOss.from_tensors(config, deq.items(), device="cpu", dtype=torch.float32)
    ids = torch.stack([_prompt(3 * WINDOW, 1), _prompt(3 * WINDOW, 2)])
    got, want, exact = mx_model(ids), reference(ids), float_model(ids)
    assert _rel(got, want) <= 1e-5
    # against the unquantized float model. Measured on this random model (seed 3): each
    # quantized weight alone has 0.111-0.114 relative error (QSNR ~19 dB); the logits 0.337
    # (unembedding alone: 0.115; attention alone: 0.321: random O(1) attention amplifies it).
    # What it costs a trained model is measured in docs/accuracy.md ("Attention in MXFP4 too").
    err = _rel(got, exact)
    assert 0.05 < err < 0.4, err


def test_bfloat16_model_from_config(models):
    config = GptOssConfig(**TINY)
    bf = GptOss.from_config(config, device="cpu", seed=5)
    mx = GptOss.from_config(config, device="cpu", seed=5, quantize_attention="mxfp4")
    assert isinstance(mx.unembedding, MXLinear) and isinstance(mx.blocks[1].attn.qkv, MXLinear)
    assert mx.blocks[0].attn.out.bias.dtype == torch.bfloat16
    ids = _prompt(2 * WINDOW, 4)
    got, want = mx(ids), bf(ids)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    assert _rel(got, want) < 0.4, _rel(got, want)  # measured 0.356 (float32 model: 0.337)


def test_kv_cache_decode_equals_full_recompute(models):
    _, _, _, mx_model = models
    total = 3 * WINDOW + 3
    ids = torch.stack([_prompt(total, 6), _prompt(total, 7)])
    full = mx_model(ids)
    cache = mx_model.new_cache(2, total)
    pieces = [(0, WINDOW + 3)] + [(t, t + 1) for t in range(WINDOW + 3, total - 3)] + [(total - 3, total)]
    for a, b in pieces:
        assert _rel(mx_model(ids[:, a:b], cache=cache), full[:, a:b]) <= 1e-5, (a, b)
    prompt = ids[:, :4]
    assert torch.equal(mx_model.generate(prompt, WINDOW + 2, stop=()),
                       mx_model.generate(prompt, WINDOW + 2, stop=(), use_cache=False))


def test_tensor_order_does_not_matter(models):
    """A bias may arrive before or after its weight; the model is the same."""
    config, tensors, _, mx_model = models
    backwards = GptOss.from_tensors(config, reversed(list(tensors.items())), device="cpu",
                                    dtype=torch.float32, quantize_attention="mxfp4")
    ids = _prompt(WINDOW + 5, 8)
    assert torch.equal(backwards(ids), mx_model(ids))


def test_missing_bias_is_still_named(models):
    config, tensors, _, _ = models
    items = [(n, t) for n, t in tensors.items() if n != "blocks.1.attn.out.bias"]
    with pytest.raises(ValueError, match="blocks.1.attn.out.bias"):
        GptOss.from_tensors(config, items, device="cpu", dtype=torch.float32, quantize_attention="mxfp4")


def test_from_pretrained_quantizes_a_hugging_face_export(tmp_path):
    from mx_tiny_models import tiny_gpt_oss

    from mxfp4.io.gpt_oss_hf import save_gpt_oss_hf

    save_gpt_oss_hf(tiny_gpt_oss(all_weights=True), tmp_path / "ckpt")
    plain = GptOss.from_pretrained(tmp_path / "ckpt", device="cpu", dtype=torch.float32, progress=False)
    mx = GptOss.from_pretrained(tmp_path / "ckpt", device="cpu", dtype=torch.float32, progress=False,
                                quantize_attention="mxfp4")
    assert isinstance(plain.unembedding, nn.Linear) and isinstance(mx.unembedding, MXLinear)
    for i in range(2):
        for part in ("qkv", "out"):
            layer, ref = getattr(mx.blocks[i].attn, part), getattr(plain.blocks[i].attn, part)
            assert isinstance(layer, MXLinear)
            q = mxfp4.quantize(ref.weight, axis=1, scale_rule="even")
            assert torch.equal(layer.weight_codes, q.codes) and torch.equal(layer.bias, ref.bias)
    ids = _prompt(12, 9, vocab=128)
    assert _rel(mx(ids), plain(ids)) < 0.4, _rel(mx(ids), plain(ids))  # measured 0.319


@pytest.mark.parametrize("bad", ["int4", "MXFP4", "", True, 4])
def test_bad_value_is_a_clear_error_before_loading(bad, monkeypatch):
    config = GptOssConfig(**TINY)

    def never(*args, **kwargs):
        raise AssertionError("nothing may be read or built for a bad quantize_attention")

    monkeypatch.setattr("mxfp4.models.gpt_oss.random_tensors", never)
    with pytest.raises(ValueError, match=r"quantize_attention must be None .* or 'mxfp4', got"):
        GptOss.from_config(config, device="cpu", quantize_attention=bad)
    with pytest.raises(ValueError, match="quantize_attention must be"):
        GptOss.from_tensors(config, iter(never, None), device="cpu", quantize_attention=bad)
    with pytest.raises(ValueError, match="quantize_attention must be"):
        GptOss.from_pretrained("/nonexistent/checkpoint", device="cpu", quantize_attention=bad)
