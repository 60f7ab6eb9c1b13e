"""`mxfp4 quantize` / `mxfp4 eval` end to end on a tiny model folder, and the evaluation code."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from mx_tiny_models import char_tokenizer, save_tiny_folder, tiny_gemma3, write_text
from mxfp4.cli import main
from mxfp4.evaluate import hidden_state_qsnr, perplexity, sliding_windows
from mxfp4.io.hf import load_model
from mxfp4.models_cli import calibration_batches, text_tokens
from mxfp4.nn import quantize_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    save_tiny_folder(base / "float")
    write_text(base / "text.txt")
    return base


def _logits(model, tokens):
    with torch.no_grad():
        return model(tokens[None, :64]).logits


def test_quantize_rtn_and_reload_equals_in_memory(folder, capsys):
    out = folder / "rtn"
    assert main(["quantize", str(folder / "float"), "-o", str(out), "--scale-rule", "ceil",
                 "--json", str(folder / "rtn.json")]) == 0
    printed = capsys.readouterr().out
    assert "14 layers converted" in printed and "QSNR" in printed
    summary = json.load(open(folder / "rtn.json"))
    assert len(summary["layers"]) == 14 and summary["bytes_after"] < summary["bytes_before"] / 3
    assert {"tokenizer.json", "config.json", "mxfp4_config.json"} <= set(os.listdir(out))
    loaded, kind = load_model(str(out))
    ref = tiny_gemma3()
    quantize_model(ref, scale_rule="ceil")
    tokens = text_tokens(char_tokenizer(), folder / "text.txt", 200)
    assert kind == "mxfp4" and torch.equal(_logits(loaded, tokens), _logits(ref, tokens))


def test_streamed_gptq_hadamard_equals_in_memory(folder):
    out = folder / "gptq"
    args = ["quantize", str(folder / "float"), "-o", str(out), "--method", "gptq", "--hadamard",
            "--calib", str(folder / "text.txt"), "--calib-tokens", "1024", "--calib-seq", "128",
            "--device", "cpu"]  # bit-identical to the CPU in-memory run (a GPU sums in another order)
    assert main(args) == 0
    loaded, _ = load_model(str(out))
    calib = calibration_batches(char_tokenizer(), folder / "text.txt", 1024, 128)
    assert len(calib) == 1 and calib[0].shape == (8, 128) and torch.all(calib[0][:, 0] == 2)
    ref = tiny_gemma3()
    quantize_model(ref, method="gptq", hadamard=True, calibration=calib)
    tokens = text_tokens(char_tokenizer(), folder / "text.txt", 200)
    assert torch.equal(_logits(loaded, tokens), _logits(ref, tokens))
    assert loaded.model.layers[0].self_attn.q_proj.hadamard


def test_eval_float_mxfp4_and_compressed_tensors(folder, capsys):
    ct = folder / "ct"
    assert main(["quantize", str(folder / "float"), "-o", str(ct), "--format",
                 "compressed-tensors", "--scale-rule", "ceil"]) == 0
    results = {}
    for name in ("float", "ct"):
        j = folder / f"eval-{name}.json"
        assert main(["eval", str(folder / name), "--text", str(folder / "text.txt"),
                     "--max-tokens", "600", "--context", "128", "--stride", "64",
                     "--json", str(j)]) == 0
        results[name] = json.load(open(j))
    assert results["ct"]["kind"] == "compressed-tensors" and results["float"]["kind"] == "float"
    assert results["float"]["tokens"] == 599 and math.isfinite(results["ct"]["perplexity"])
    direct = perplexity(tiny_gemma3(), text_tokens(char_tokenizer(), folder / "text.txt", 600),
                        context=128, stride=64, bos_id=2)
    assert results["float"]["perplexity"] == pytest.approx(direct.perplexity, rel=1e-6)
    # the compressed-tensors export holds the same weights as the rtn/ceil mxfp4 checkpoint
    main(["quantize", str(folder / "float"), "-o", str(folder / "native"), "--scale-rule", "ceil"])
    j = folder / "eval-native.json"
    assert main(["eval", str(folder / "native"), "--text", str(folder / "text.txt"),
                 "--max-tokens", "600", "--context", "128", "--stride", "64", "--json", str(j)]) == 0
    assert json.load(open(j))["perplexity"] == pytest.approx(results["ct"]["perplexity"], rel=1e-5)
    assert "perplexity" in capsys.readouterr().out


def test_eval_compare_writes_table_and_png(folder, capsys, tmp_path):
    src = folder / "cmp"
    main(["quantize", str(folder / "float"), "-o", str(src)])
    png, j = tmp_path / "q.png", tmp_path / "e.json"
    assert main(["eval", str(src), "--text", str(folder / "text.txt"), "--max-tokens", "300",
                 "--context", "128", "--stride", "128", "--compare", str(folder / "float"),
                 "--plot", str(png), "--json", str(j)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.load(open(j))["qsnr"]
    assert [r[0] for r in rows] == ["block 0", "block 1", "logits"]
    assert all(5 < r[1] < 60 for r in rows)
    assert "block 1" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["quantize", "{f}/float", "-o", "{f}/x", "--method", "gptq"], "needs --calib"),
    (["quantize", "{f}/float", "-o", "{f}/x", "--calib", "{f}/text.txt"], "only used by"),
    (["quantize", "{f}/nowhere", "-o", "{f}/x"], "does not exist"),
    (["quantize", "{f}/float", "-o", "{f}/x", "--hadamard", "--format", "compressed-tensors"],
     "Hadamard"),
    (["eval", "{f}/float", "--text", "{f}/text.txt", "--max-tokens", "1", "--context", "64"],
     "at least 2"),
])
def test_errors_exit_1_with_a_message(folder, capsys, args, message):
    assert main([a.format(f=folder) for a in args]) == 1
    assert message in capsys.readouterr().err


def test_installed_command_runs(folder):
    out = subprocess.run([sys.executable, "-m", "mxfp4.cli", "quantize", str(folder / "float"),
                          "-o", str(folder / "sub"), "--method", "mse"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "14 layers converted" in out.stdout


# -- evaluation helpers -------------------------------------------------------------------

def test_sliding_windows_score_every_token_once():
    for n, context, stride in ((1000, 512, 256), (513, 512, 256), (50, 512, 256), (97, 10, 3)):
        scored = []
        for begin, end, k in sliding_windows(n, context, stride):
            assert end - begin <= context and k <= end - begin
            scored += list(range(end - k, end))
        assert scored == list(range(1, n))
    with pytest.raises(ValueError):
        sliding_windows(100, 16, 32)


def test_perplexity_of_a_perfect_and_a_uniform_model():
    class Uniform(torch.nn.Module):
        def forward(self, ids):
            return torch.zeros(*ids.shape, 10)

    tokens = torch.randint(0, 10, (100,))
    assert perplexity(Uniform(), tokens, context=16, stride=8).perplexity == pytest.approx(10)


def test_hidden_state_qsnr_is_infinite_for_the_same_model():
    model = tiny_gemma3()
    rows = hidden_state_qsnr(model, model, torch.randint(3, 99, (100,)), context=50)
    assert [q for _, q in rows] == [math.inf] * 3


def test_streamed_gptq_on_a_model_with_biases(tmp_path):
    """Qwen2 has q/k/v biases and reads `attention_type` from its blocks during the forward."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from mxfp4.io.hf import quantize_folder

    def build():
        torch.manual_seed(0)
        return Qwen2ForCausalLM(Qwen2Config(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128)).eval()

    build().save_pretrained(tmp_path / "float")
    calib = [torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(s))
             for s in range(2)]
    summary = quantize_folder(str(tmp_path / "float"), str(tmp_path / "q"), method="gptq",
                              calibration=calib)
    assert summary.converted == 14
    loaded, kind = load_model(str(tmp_path / "q"))
    assert kind == "mxfp4" and loaded.model.layers[0].self_attn.q_proj.bias is not None
    ref = build()
    quantize_model(ref, method="gptq", calibration=calib)
    ids = torch.randint(0, 128, (2, 20), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, ref(ids).logits)
