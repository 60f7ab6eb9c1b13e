"""`mxfp4 quantize --method gptq` on a bf16 GPT-OSS fine-tune: sequential GPTQ of the experts on
calibration tokens routed to each expert, written in the gpt-oss MXFP4 layout."""

import os

import pytest
import torch
from mx_tiny_models import char_tokenizer, write_text
from mx_tiny_models import tiny_gpt_oss
from test_gpt_oss_finetune import EXPERTS, all_tensors

from mxfp4.algorithms.gptq import gptq_quantize
from mxfp4.cli import main
from mxfp4.io.gpt_oss_gptq import hessian, quantize_layer, routed_rows
from mxfp4.io.gpt_oss_hf import quantize_gpt_oss_folder
from mxfp4.models_cli import calibration_batches
from mxfp4.nn.moe import MoE, swiglu

CALIB = ["--calib-tokens", "2048", "--calib-seq", "64"]


def save_finetune(folder, dead_expert=None):
    """A tiny bf16 fine-tune with its tokenizer; `dead_expert` (layer, e): a router bias that
    no token overcomes."""
    model = tiny_gpt_oss(all_weights=True, dtype=torch.bfloat16)
    if dead_expert is not None:
        layer, e = dead_expert
        with torch.no_grad():
            model.model.layers[layer].mlp.router.bias[e] = -1e4
    model.save_pretrained(folder, max_shard_size="40KB")
    char_tokenizer().save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """(fine-tune folder, its gptq output through the CLI, its rtn output, calibration text)."""
    root = tmp_path_factory.mktemp("gptq")
    save_finetune(root / "bf16")
    text = write_text(root / "calib.txt", words=2000, seed=0)
    argv = ["quantize", str(root / "bf16"), "-o", str(root / "gptq"), "--method", "gptq",
            "--calib", str(text), *CALIB]
    assert main(argv) == 0
    quantize_gpt_oss_folder(root / "bf16", root / "rtn")
    return root / "bf16", root / "gptq", root / "rtn", text


def test_the_cli_writes_the_gpt_oss_layout_that_both_loaders_read(quantized):
    from transformers import GptOssForCausalLM, Mxfp4Config

    from mxfp4.models import GptOss

    src, out, rtn, _ = quantized
    shards = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))
    assert sorted(f for f in os.listdir(out) if f.endswith(".safetensors")) == shards
    before, after, rounded = all_tensors(src), all_tensors(out), all_tensors(rtn)
    for key, t in before.items():  # everything but the float experts, bit for bit
        if not key.endswith(EXPERTS):
            assert torch.equal(after[key], t), key
    changed = [k for k in after if k.endswith("_blocks") and not torch.equal(after[k], rounded[k])]
    assert len(changed) == 4  # GPTQ moved codes in every expert tensor
    theirs = GptOssForCausalLM.from_pretrained(out, dtype=torch.float32,
                                               quantization_config=Mxfp4Config(dequantize=True))
    ours = GptOss.from_pretrained(out, device="cpu", dtype=torch.float32, progress=False)
    ids = torch.tensor([3, 17, 99, 4, 8, 120, 55, 1, 64, 2, 31, 77])
    with torch.no_grad():
        want, got = theirs(ids[None]).logits[0], ours(ids)
    assert float((got - want).norm() / want.norm()) < 1e-4


def moe_errors(src, outputs, ids) -> dict[str, list[float]]:
    """Each layer's MoE output error (relative) on the float model's own MoE inputs for `ids`."""
    from transformers import GptOssForCausalLM

    model = GptOssForCausalLM.from_pretrained(src, dtype=torch.float32)
    seen = {}
    for i, layer in enumerate(model.model.layers):
        layer.mlp.register_forward_hook(
            lambda m, args, out, i=i: seen.__setitem__(i, (args[0], out[0])))
    with torch.no_grad():
        model(ids)
    errors = {}
    for name, folder in outputs.items():
        tensors = {k: v.float() if v.is_floating_point() else v
                   for k, v in all_tensors(folder).items()}
        errors[name] = []
        for i, (x, y) in seen.items():
            moe = MoE.from_checkpoint(tensors, i, experts_per_token=2)
            got = moe(x.reshape(-1, x.shape[-1])).reshape(y.shape)
            errors[name].append(float((got - y).norm() / y.norm()))
    return errors


def test_gptq_beats_rtn_on_held_out_tokens(quantized, tmp_path):
    src, out, rtn, _ = quantized
    held_out = write_text(tmp_path / "held_out.txt", words=600, seed=7)  # same words, new order
    ids = calibration_batches(char_tokenizer(), held_out, 1024, 64, batch=16)[0]
    errors = moe_errors(src, {"gptq": out, "rtn": rtn}, ids)
    # seed 0: gptq 0.041 / 0.049, rtn 0.116 / 0.115 (layers 0 / 1)
    for layer, (g, r) in enumerate(zip(errors["gptq"], errors["rtn"])):
        assert g < 0.6 * r, (layer, errors)


def test_each_expert_gets_the_hessian_of_the_rows_routed_to_it():
    g = torch.Generator().manual_seed(0)
    E, H, I, k, T = 4, 64, 32, 2, 200
    x = torch.randn(T, H, generator=g)
    router_w, router_b = torch.randn(E, H, generator=g), torch.randn(E, generator=g)
    w1, b1 = torch.randn(E, H, 2 * I, generator=g) / 8, torch.randn(E, 2 * I, generator=g) / 8
    w2, b2 = torch.randn(E, I, H, generator=g) / 8, torch.zeros(E, H)
    chosen = (x @ router_w.T + router_b).topk(k, dim=-1).indices  # independent of route_reference
    rows = routed_rows(x, router_w, router_b, k)
    assert sum(len(r) for r in rows) == T * k
    q1, _, q2, _, unreached = quantize_layer(x, router_w, router_b, w1, b1, w2, b2, k=k,
                                             alpha=1.702, limit=7.0, scale_rule="floor")
    assert unreached == []
    for e in range(E):
        mine = x[(chosen == e).any(dim=1)]
        direct = 2 * (mine.T @ mine).double() / len(mine)
        assert torch.equal(rows[e], (chosen == e).any(dim=1).nonzero()[:, 0])
        assert torch.allclose(hessian(x[rows[e]]), direct, rtol=1e-12, atol=0)
        w1_hat = gptq_quantize(w1[e].T, direct)
        assert torch.equal(q1.codes[e], w1_hat.codes) and torch.equal(q1.scales[e], w1_hat.scales)
        a = swiglu(mine @ w1_hat.dequantize().T + b1[e])  # W2 sees the quantized W1's activations
        w2_hat = gptq_quantize(w2[e].T, 2 * (a.T @ a).double() / len(a))
        assert torch.equal(q2.codes[e], w2_hat.codes), e


def test_an_expert_no_token_reached_is_rounded_to_nearest_and_reported(tmp_path):
    save_finetune(tmp_path / "bf16", dead_expert=(1, 5))
    text = write_text(tmp_path / "calib.txt", words=600, seed=0)
    calibration = calibration_batches(char_tokenizer(), text, 512, 64)
    summary = quantize_gpt_oss_folder(tmp_path / "bf16", tmp_path / "gptq", method="gptq",
                                      calibration=calibration)
    quantize_gpt_oss_folder(tmp_path / "bf16", tmp_path / "rtn")
    kinds = {r.name: r.kind for r in summary.layers}
    assert kinds["model.layers.0.mlp.experts.down_proj"] == "experts"
    for pname in EXPERTS:
        assert kinds[f"model.layers.1.mlp.experts.{pname}"] == \
            "experts (no calibration tokens, rtn: 5)"
    gptq, rtn = all_tensors(tmp_path / "gptq"), all_tensors(tmp_path / "rtn")
    for pname in EXPERTS:
        key = f"model.layers.1.mlp.experts.{pname}_blocks"
        assert torch.equal(gptq[key][5], rtn[key][5])
        assert not torch.equal(gptq[key][4], rtn[key][4])


def test_gptq_without_calibration_is_refused(quantized, tmp_path):
    with pytest.raises(ValueError, match="needs calibration inputs"):
        quantize_gpt_oss_folder(quantized[0], tmp_path / "q", method="gptq", calibration=None)
    assert not (tmp_path / "q").exists()
