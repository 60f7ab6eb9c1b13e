"""Encoders (BERT, sentence embedders): quantize a folder, reload it, calibrate on padded
batches, and a clear refusal from `mxfp4 eval`, which needs a causal LM."""

import json

import pytest
import torch
from torch import nn

from mx_tiny_models import char_tokenizer, write_text
from mxfp4.cli import main
from mxfp4.evaluate import perplexity
from mxfp4.io.checkpoint import build_hf_skeleton, load_quantized
from mxfp4.io.hf import load_model
from mxfp4.nn import MXLinear, quantize_model
from mxfp4.nn import convert

LINEARS = 2 * 6 + 1  # per layer: query, key, value, attention out, intermediate, output; pooler


def tiny_bert(seed: int = 0, layers: int = 2):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=128, hidden_size=64, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=128, max_position_embeddings=64)
    model = BertModel(config).eval()
    with torch.no_grad():  # less uniform than the std-0.02 init
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(1 + 3 * torch.rand(p.shape[0], 1))
    return model


def _ids(seed: int, batch: int = 2, length: int = 20):
    return torch.randint(1, 128, (batch, length), generator=torch.Generator().manual_seed(seed))


def _embeddings(model, ids):
    with torch.no_grad():
        return model(ids).last_hidden_state


@pytest.mark.parametrize("method", ["rtn", "mse"])
def test_bert_folder_quantized_by_the_cli_gives_the_python_api_embeddings(tmp_path, method):
    tiny_bert().save_pretrained(tmp_path / "float")
    assert main(["quantize", str(tmp_path / "float"), "-o", str(tmp_path / "q"),
                 "--method", method]) == 0
    loaded = load_quantized(tmp_path / "q")
    assert type(loaded).__name__ == "BertModel"
    assert isinstance(loaded.encoder.layer[1].attention.self.query, MXLinear)
    ref = tiny_bert()
    assert quantize_model(ref, method=method).converted == LINEARS
    ids = _ids(1)
    assert torch.equal(_embeddings(loaded, ids), _embeddings(ref, ids))  # bit for bit


def test_skeleton_class_comes_from_the_config(tmp_path):
    from transformers import DistilBertConfig

    tiny_bert().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["BertModel"]
    config["quantization_config"] = {"format": "mxfp4"}  # our marker that stops transformers
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = build_hf_skeleton(str(tmp_path))
    assert type(model).__name__ == "BertModel" and not model.training
    assert getattr(model.config, "quantization_config", None) is None
    # unknown, absent, not a model class, a class of another config type: fall back
    for names in (["NoSuchModel"], None, ["BertConfig"], ["GPT2Model"]):
        config["architectures"] = names
        (tmp_path / "config.json").write_text(json.dumps(config))
        assert type(build_hf_skeleton(str(tmp_path))).__name__ == "BertLMHeadModel"
    # no causal LM class for this config type: the bare model
    DistilBertConfig(vocab_size=64, dim=64, n_layers=1, n_heads=2, hidden_dim=64).save_pretrained(
        tmp_path / "distil")
    assert type(build_hf_skeleton(str(tmp_path / "distil"))).__name__ == "DistilBertModel"


# -- GPTQ on padded calibration batches ---------------------------------------------------

def _sequences():
    lengths = (20, 13, 7)
    return [torch.randint(1, 128, (1, n), generator=torch.Generator().manual_seed(n))
            for n in lengths]


def _padded(seqs, as_batch_encoding: bool):
    """One right-padded batch of `seqs` with its attention mask, as a tokenizer returns it."""
    from transformers import BatchEncoding

    width = max(s.shape[1] for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :s.shape[1]], mask[i, :s.shape[1]] = s[0], 1
    batch = {"input_ids": ids, "attention_mask": mask}
    return BatchEncoding(batch) if as_batch_encoding else batch


def _gptq_hessians(model, calibration, monkeypatch) -> list:
    seen = []

    def spy(weight, hessian, **kw):
        seen.append(hessian.clone())
        return real(weight, hessian, **kw)

    real = convert.gptq_quantize
    monkeypatch.setattr(convert, "gptq_quantize", spy)
    quantize_model(model, method="gptq", calibration=calibration)
    monkeypatch.undo()
    return seen


@pytest.mark.parametrize("as_batch_encoding", [False, True])
def test_gptq_hessian_of_a_padded_batch_equals_the_unpadded_one(monkeypatch, as_batch_encoding):
    # one encoder block: every Hessian comes from float activations (BERT with right padding
    # and its attention mask gives the real positions the same activations as without padding)
    seqs = _sequences()
    unpadded = _gptq_hessians(tiny_bert(layers=1), seqs, monkeypatch)
    padded = _gptq_hessians(tiny_bert(layers=1), [_padded(seqs, as_batch_encoding)], monkeypatch)
    assert len(padded) == len(unpadded) == 6
    for a, b in zip(padded, unpadded):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * float(b.diagonal().mean()))


def test_gptq_hessian_without_decoder_blocks_ignores_padding(monkeypatch):
    class Tiny(nn.Module):  # no ModuleList of blocks: GPTQ hooks every layer in one pass
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed, self.proj = nn.Embedding(128, 64), nn.Linear(64, 64)

        def forward(self, input_ids, attention_mask=None):
            return self.proj(self.embed(input_ids))

    seqs = _sequences()
    (unpadded,) = _gptq_hessians(Tiny(), seqs, monkeypatch)
    (padded,) = _gptq_hessians(Tiny(), [_padded(seqs, True)], monkeypatch)
    torch.testing.assert_close(padded, unpadded, rtol=1e-5, atol=1e-6)


# -- mxfp4 eval needs a causal LM ---------------------------------------------------------

def test_perplexity_refuses_an_encoder_before_any_work(tmp_path, capsys):
    tokens = torch.randint(1, 100, (50,))
    with pytest.raises(ValueError, match="causal language model with an LM head"):
        perplexity(tiny_bert(), tokens, context=16, stride=8)
    folder = tmp_path / "float"
    tiny_bert().save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    write_text(tmp_path / "text.txt", words=100)
    # AutoModelForCausalLM loads the encoder folder as BertLMHeadModel with a random head
    model, kind = load_model(str(folder))
    assert type(model).__name__ == "BertLMHeadModel" and kind == "float"
    with pytest.raises(ValueError, match="BertModel"):
        perplexity(model, tokens, context=16, stride=8)
    main(["quantize", str(folder), "-o", str(tmp_path / "q")])
    capsys.readouterr()
    for name in ("float", "q"):
        assert main(["eval", str(tmp_path / name), "--text", str(tmp_path / "text.txt"),
                     "--max-tokens", "64", "--context", "32", "--stride", "16"]) == 1
        assert "causal language model with an LM head" in capsys.readouterr().err
