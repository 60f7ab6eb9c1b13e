"""`mxfp4 train` end to end on tiny models and text (CPU), and its pieces: the Llama-style LM,
the data order, the schedule, resuming, bad inputs."""

import copy
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import mxfp4
from mx_tiny_models import save_tiny_folder, write_text
from mxfp4.cli import main
from mxfp4.nn import MXLinear
from mxfp4.train.data import (TokenBatches, build_tokenizer, sequences, split_text, sotu_split,
                              tokenize)
from mxfp4.train.lm import LM, lm_config, to_hf
from mxfp4.train.loop import TrainSettings, lr_at, validation_loss

PNG = b"\x89PNG\r\n\x1a\n"
LM_ARGS = ["--config", "tiny", "--batch", "2", "--seq", "32", "--eval-every", "2",
           "--val-batches", "2", "--device", "cpu", "--lr", "3e-3"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    write_text(base / "text.txt", words=1500)
    (base / "empty.txt").write_text(" \n")
    return base


def _log(folder):
    with open(os.path.join(folder, "loss.json")) as f:
        return json.load(f)


def _curve(log):
    return log["train"], log["val"]


# -- the pieces ----------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [{}, {"kv_heads": 2, "tie_embeddings": False}])
def test_lm_computes_what_transformers_llama_computes(changes):
    model = LM(lm_config("tiny", 259, **changes), seed=0)
    ids = torch.randint(0, 259, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(ids), to_hf(model)(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert model.num_parameters() < 1_000_000
    assert 20e6 < LM(lm_config("small", 259)).num_parameters() < 50e6


def test_unknown_config_and_bad_sizes_are_errors():
    with pytest.raises(ValueError, match="unknown model config 'huge'"):
        lm_config("huge", 259)
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        lm_config("tiny", 259, kv_heads=3)


def test_byte_tokenizer_round_trips_and_bpe_is_deterministic():
    text = "The state of the Union — ünïcode too.\n" * 20
    byte = build_tokenizer(text, 259)
    ids = tokenize(byte, text)
    assert len(byte) == 259 and ids.numel() == len(text.encode()) and byte.decode(ids) == text
    a, b = build_tokenizer(text, 300), build_tokenizer(text, 300)
    assert a.get_vocab() == b.get_vocab() and tokenize(a, text).numel() < ids.numel()
    with pytest.raises(ValueError, match="at least 259 tokens"):
        build_tokenizer(text, 100)


def test_split_is_disjoint_and_at_a_paragraph():
    text = "".join(f"paragraph {i} " * 5 + "\n\n" for i in range(40))
    train, val = split_text(text, 0.1)
    assert train + val == text and train.endswith("\n\n") and 0.05 < len(val) / len(text) < 0.15
    with pytest.raises(ValueError, match="too short"):
        split_text("x", 0.1)


def test_batches_are_seeded_permutations_per_epoch():
    rows = sequences(torch.arange(1000), 9, bos=None)  # 100 rows of 10
    assert rows.shape == (100, 10) and torch.equal(rows[1], torch.arange(10, 20))
    data = TokenBatches(rows, batch=10, seed=3)
    epoch = torch.cat([data.batch_at(s) for s in range(10)])
    assert sorted(epoch[:, 0].tolist()) == list(range(0, 1000, 10))
    again = TokenBatches(rows, batch=10, seed=3)
    assert torch.equal(again.batch_at(13), data.batch_at(13))  # any step, in any order
    assert not torch.equal(TokenBatches(rows, 10, seed=4).batch_at(0), data.batch_at(0))
    assert not torch.equal(data.batch_at(10), data.batch_at(0))  # epoch 2 is another order
    with_bos = sequences(torch.arange(100), 9, bos=7)
    assert with_bos.shape == (11, 10) and (with_bos[:, 0] == 7).all()
    with pytest.raises(ValueError, match="fewer than one batch of 200"):
        TokenBatches(rows, batch=200, seed=0)


def test_learning_rate_warms_up_then_follows_the_cosine():
    s = TrainSettings(steps=110, lr=1.0, warmup=10, min_lr=0.1)
    assert lr_at(0, s) == pytest.approx(0.1) and lr_at(9, s) == pytest.approx(1.0)
    assert lr_at(60, s) == pytest.approx(0.55) and lr_at(110, s) == pytest.approx(0.1)


def test_sotu_split_by_year(tmp_path):
    data = tmp_path / "package" / "data"
    data.mkdir(parents=True)
    for name in ("1999_a", "2000_b", "2001_c", "2002_d"):
        (data / f"{name}.txt").write_text(f"speech {name}\n")
    (tmp_path / "package" / "package.json").write_text('{"version": "9.9.9"}')
    train, val, info = sotu_split(str(tmp_path / "package"))
    assert train == "speech 1999_a\n\nspeech 2000_b\n\n" and val == "speech 2001_c\n\nspeech 2002_d\n\n"
    assert info["version"] == "9.9.9" and info["validation"] == "2 speeches 2001-2002"
    out = tmp_path / "corpus"
    assert main(["train", "corpus", "-o", str(out), "--package", str(tmp_path / "package")]) == 0
    assert (out / "val.txt").read_text() == val and json.load(open(out / "corpus.json"))["train"]


# -- mxfp4 train lm ------------------------------------------------------------------------------

def test_lm_run_writes_a_llama_folder_that_eval_reads(base, capsys):
    out = base / "lm"
    assert main(["train", "lm", *LM_ARGS, "--recipe", "mxfp4-forward", "--steps", "4",
                 "--text", str(base / "text.txt"), "-o", str(out)]) == 0
    assert "4 steps" in capsys.readouterr().out
    log = _log(out)
    assert [r["step"] for r in log["train"]] == [1, 2, 3, 4] and [r["step"] for r in log["val"]] == [2, 4]
    assert all(r["loss"] > 0 for r in log["train"]) and log["timing"][0]["tokens_per_s"] > 0
    assert (out / "loss.png").read_bytes()[:8] == PNG
    run = json.load(open(out / "run.json"))
    assert run["options"]["recipe"] == "mxfp4-forward" and run["data"]["val_sha256"]
    assert not (out / "checkpoint").exists()  # the final folder drops the optimizer state
    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "LlamaForCausalLM"
    assert main(["eval", str(out), "--text", str(base / "text.txt"), "--max-tokens", "200",
                 "--context", "64", "--stride", "32"]) == 0


def test_resume_after_an_interrupt_continues_the_same_loss_curve(base, monkeypatch):
    args = ["train", "lm", *LM_ARGS, "--recipe", "mxfp4-wgrad", "--steps", "4",  # SR draws
            "--checkpoint-every", "2", "--text", str(base / "text.txt")]
    assert main([*args, "-o", str(base / "whole")]) == 0
    batch_at = TokenBatches.batch_at

    def interrupted(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return batch_at(self, step)

    monkeypatch.setattr(TokenBatches, "batch_at", interrupted)
    assert main([*args, "-o", str(base / "cut")]) == 130  # Ctrl-C during step 4
    monkeypatch.setattr(TokenBatches, "batch_at", batch_at)
    assert len(json.load(open(base / "cut" / "checkpoint" / "loss.json"))["train"]) == 2
    assert main([*args, "-o", str(base / "cut")]) == 1  # neither --resume nor --overwrite
    assert main([*args, "-o", str(base / "cut"), "--resume"]) == 0
    assert _curve(_log(base / "cut")) == _curve(_log(base / "whole"))
    whole = load_file(base / "whole" / "model.safetensors")
    cut = load_file(base / "cut" / "model.safetensors")
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)


def test_stop_at_then_resume_gives_the_same_curve(base):
    args = ["train", "lm", *LM_ARGS, "--recipe", "bf16", "--steps", "5", "--checkpoint-every",
            "10", "--text", str(base / "text.txt")]
    assert main([*args, "-o", str(base / "a")]) == 0
    assert main([*args, "-o", str(base / "b"), "--stop-at", "3"]) == 0
    assert not (base / "b" / "loss.json").exists() and (base / "b" / "checkpoint" / "state.pt").exists()
    assert main([*args, "-o", str(base / "b"), "--resume", "--lr", "1e-2"]) == 1  # other settings
    assert main([*args, "-o", str(base / "b"), "--resume"]) == 0
    assert _curve(_log(base / "b")) == _curve(_log(base / "a"))
    plot = base / "arms.png"
    assert main(["train", "plot", str(base / "a"), str(base / "b"), "-o", str(plot),
                 "--labels", "a,b"]) == 0
    assert plot.read_bytes()[:8] == PNG


@pytest.mark.parametrize("extra, message", [
    (["--recipe", "fp3"], "unknown training recipe 'fp3'"),
    (["--config", "huge"], "unknown model config 'huge'"),
    (["--text", "EMPTY"], "is empty"),
    (["--text", "MISSING"], "does not exist"),
    (["--batch", "500"], "fewer than one batch of 500"),
    (["--warmup", "99"], "--warmup must be between 0 and --steps 4"),
    (["--resume"], "no checkpoint to resume"),
])
def test_lm_bad_inputs_are_clear_errors(base, capsys, extra, message):
    extra = [{"EMPTY": str(base / "empty.txt"), "MISSING": str(base / "nope.txt")}.get(a, a)
             for a in extra]
    args = ["train", "lm", *LM_ARGS, "--steps", "4", "--text", str(base / "text.txt"),
            "-o", str(base / "bad"), *extra]
    assert main(args) == 1
    assert message in capsys.readouterr().err
    assert not (base / "bad").exists()


def test_an_existing_output_needs_overwrite_or_resume(base, capsys):
    (base / "full").mkdir()
    (base / "full" / "keep.txt").write_text("mine")
    args = ["train", "lm", *LM_ARGS, "--steps", "2", "--text", str(base / "text.txt"),
            "-o", str(base / "full")]
    assert main(args) == 1
    assert "is not empty" in capsys.readouterr().err
    assert main([*args, "--resume", "--overwrite"]) == 1
    assert main([*args, "--overwrite"]) == 0
    assert not (base / "full" / "keep.txt").exists() and (base / "full" / "loss.json").exists()


# -- mxfp4 train qat -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_folder(base):
    save_tiny_folder(base / "float")
    return base / "float"


def test_qat_writes_an_mxfp4_checkpoint_that_loads_and_evaluates(base, hf_folder, capsys):
    out = base / "qat"
    assert main(["train", "qat", str(hf_folder), "--text", str(base / "text.txt"), "-o", str(out),
                 "--steps", "3", "--batch", "2", "--seq", "32", "--lr", "1e-3", "--eval-every", "3",
                 "--val-batches", "2", "--device", "cpu"]) == 0
    assert "14 layers QAT-trained" in capsys.readouterr().out
    log = _log(out)
    assert len(log["train"]) == 3 and (out / "loss.png").read_bytes()[:8] == PNG
    model = mxfp4.load_quantized(out)
    assert isinstance(model.model.layers[0].mlp.down_proj, MXLinear)
    # The loaded checkpoint scores the validation text exactly as the QAT model did.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    _, val = split_text(open(base / "text.txt").read(), 0.05)
    rows = sequences(tokenize(tokenizer, val), 32, tokenizer.bos_token_id)[:4]
    assert validation_loss(model, rows, 2, "cpu") == log["val"][-1]["loss"]
    assert main(["eval", str(out), "--text", str(base / "text.txt"), "--max-tokens", "100",
                 "--context", "64", "--stride", "32"]) == 0


def test_qat_distill_learns_the_float_models_predictions(base, hf_folder):
    """--distill: the loss is KL(float ‖ QAT model), which is 0 with quantization off and falls
    as the QAT model learns; the option is recorded and the checkpoint still loads."""
    import torch

    from mxfp4.io.hf import load_model
    from mxfp4.train import prepare_qat, set_quantization
    from mxfp4.train.loop import distillation_loss

    float_model, _ = load_model(str(hf_folder), dtype=torch.float32, device="cpu")
    student = copy.deepcopy(float_model)
    prepare_qat(student)
    ids = torch.randint(0, 100, (2, 17), generator=torch.Generator().manual_seed(0))
    set_quantization(student, False)
    assert distillation_loss(student, float_model, ids).item() == pytest.approx(0, abs=1e-6)
    set_quantization(student, True)
    assert distillation_loss(student, float_model, ids).item() > 1e-4
    out = base / "qat-distill"
    assert main(["train", "qat", str(hf_folder), "--text", str(base / "text.txt"), "-o", str(out),
                 "--distill", "--steps", "6", "--batch", "2", "--seq", "32", "--lr", "3e-4",
                 "--warmup", "0", "--eval-every", "6", "--val-batches", "2", "--device", "cpu"]) == 0
    losses = [row["loss"] for row in _log(out)["train"]]
    assert losses[-1] < 0.8 * losses[0]  # 0.0079 -> 0.0043 measured
    with open(out / "run.json") as f:
        assert json.load(f)["options"]["distill"] is True
    assert isinstance(mxfp4.load_quantized(out).model.layers[0].mlp.down_proj, MXLinear)


@pytest.mark.parametrize("extra, message", [
    (["--include", "nothing*"], "found no nn.Linear layer"),
    (["--block-size", "48"], "block_size must be a power of two"),
    (["--text", "EMPTY"], "is empty"),
])
def test_qat_bad_inputs_are_clear_errors(base, hf_folder, capsys, extra, message):
    extra = [{"EMPTY": str(base / "empty.txt")}.get(a, a) for a in extra]
    assert main(["train", "qat", str(hf_folder), "--text", str(base / "text.txt"),
                 "-o", str(base / "qbad"), "--steps", "2", "--device", "cpu", *extra]) == 1
    assert message in capsys.readouterr().err
    assert not (base / "qbad").exists()


def test_qat_refuses_a_quantized_model_and_an_output_inside_the_model(base, hf_folder, capsys):
    args = ["--text", str(base / "text.txt"), "--steps", "2", "--device", "cpu"]
    assert main(["train", "qat", str(hf_folder), *args, "-o", str(hf_folder / "out")]) == 1
    assert "lies inside or contains the input" in capsys.readouterr().err
    assert main(["quantize", str(hf_folder), "-o", str(base / "rtn")]) == 0
    capsys.readouterr()
    assert main(["train", "qat", str(base / "rtn"), *args, "-o", str(base / "q2")]) == 1
    assert "QAT starts from the float model" in capsys.readouterr().err
