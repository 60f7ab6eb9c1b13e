"""GPT-OSS QAT end to end (issue 23): a 2-layer GptOss with attention and experts trainable learns
a short text with MXFP4 QAT experts and with float experts (quantization off), and the QAT
model's converted gpt-oss checkpoint reloads with the same logits. CPU, float32."""

import pytest
import torch
from torch import nn

from mxfp4.models import GptOss, GptOssConfig
from mxfp4.nn import MoE
from mxfp4.train import QATMoE, convert, prepare_qat, save_gpt_oss, set_quantization

TEXT = (
    "Fellow citizens, the state of the union is strong. We have built roads and schools, and we "
    "will build more. The people ask for work, for peace and for a fair share of the harvest. "
    "Let us answer them with deeds, not words. The Congress and the President must work together, "
    "for the union is strong only when its people are strong. We will keep the peace, we will "
    "keep our word, and we will keep faith with those who came before us and those who follow."
)
SEQ, BATCH, STEPS = 32, 4, 20


def _tiny(quantize: bool) -> GptOss:
    config = GptOssConfig(vocab_size=259, hidden_size=64, num_hidden_layers=2, num_experts=8,
                          experts_per_token=2, intermediate_size=64, head_dim=16,
                          num_attention_heads=4, num_key_value_heads=2, sliding_window=16)
    model = GptOss.from_config(config, device="cpu", dtype=torch.float32, seed=0)
    summary = prepare_qat(model, exclude=["*.attn.*"])
    assert summary.moes == ["blocks.0.mlp.moe", "blocks.1.mlp.moe"] and not summary.linears
    model.requires_grad_(True)  # GptOss loads frozen: attention, norms, embeddings train too
    assert set_quantization(model, quantize) == 2
    return model


def _rows() -> torch.Tensor:
    ids = torch.tensor(list(TEXT.encode()), dtype=torch.long) + 3  # bytes after 3 special ids
    n = ids.numel() // (SEQ + 1)
    return ids[:n * (SEQ + 1)].view(n, SEQ + 1)


def _loss(model, ids) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def _train(model, rows):
    """STEPS AdamW steps over rows in a fixed order; (losses, whether every attention weight
    got a non-zero gradient on the first step)."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    order = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(0))
    losses, attention_grads = [], None
    for step in range(STEPS):
        ids = rows[order[(torch.arange(BATCH) + step * BATCH) % rows.shape[0]]]
        opt.zero_grad()
        loss = _loss(model, ids)
        loss.backward()
        if attention_grads is None:
            attention_grads = all(p.grad is not None and p.grad.abs().sum() > 0
                                  for block in model.blocks for p in block.attn.parameters())
        opt.step()
        losses.append(loss.item())
    return losses, attention_grads


def _run(rows, quantize: bool) -> dict:
    model = _tiny(quantize)
    with torch.no_grad():
        before = _loss(model, rows).item()
    losses, attention_grads = _train(model, rows)
    with torch.no_grad():
        after = _loss(model, rows).item()
    return dict(model=model, before=before, after=after, losses=losses, attention_grads=attention_grads)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only wait on each other
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(one_thread):
    rows = _rows()
    return rows, {"qat": _run(rows, True), "float": _run(rows, False)}


def test_qat_and_float_runs_both_learn_the_text(runs):
    _, out = runs
    qat, flt = out["qat"], out["float"]
    # the experts start as MXFP4 values, which round to themselves: both arms start equal
    assert qat["before"] == flt["before"]
    assert qat["losses"][0] == flt["losses"][0]
    for arm in (qat, flt):
        assert arm["attention_grads"], "a gradient did not reach both layers' attention"
        assert arm["after"] < arm["before"] - 1.0, (arm["before"], arm["after"])
    assert qat["losses"] != flt["losses"]  # the QAT forward really rounds the trained experts
    assert abs(qat["after"] - flt["after"]) < 0.5, (qat["after"], flt["after"])


def test_qat_model_converts_and_reloads_with_identical_logits(runs, tmp_path):
    rows, out = runs
    model = out["qat"]["model"]
    ids = rows[:, :-1]
    with torch.no_grad():
        qat_logits = model(ids)
    convert(model)
    assert all(isinstance(b.mlp.moe, MoE) and not isinstance(b.mlp.moe, QATMoE) for b in model.blocks)
    save_gpt_oss(model, tmp_path / "oss")
    loaded = GptOss.from_pretrained(tmp_path / "oss", device="cpu", dtype=torch.float32, progress=False)
    with torch.no_grad():
        assert torch.equal(model(ids), qat_logits)
        assert torch.equal(loaded(ids), qat_logits)
