"""`mxfp4 generate` on a tiny GPT-OSS checkpoint with a tokenizer.json the test builds (issue 21)."""

import pytest
import torch

from mx_tiny_models import char_tokenizer
from mxfp4.cli import main

CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mx_tiny_models import tiny_gpt_oss

    from mxfp4.io.gpt_oss_hf import save_gpt_oss_hf

    model = tiny_gpt_oss(experts=4, eos_token_id=1, pad_token_id=0)
    base = tmp_path_factory.mktemp("gen")
    save_gpt_oss_hf(model, base / "plain")
    char_tokenizer().save_pretrained(base / "plain")
    save_gpt_oss_hf(model, base / "chat")
    tok = char_tokenizer()
    tok.chat_template = CHAT
    tok.save_pretrained(base / "chat")
    return base


def expected(folder, text: str, n: int) -> str:
    from mxfp4.models import GptOss

    model = GptOss.from_pretrained(folder, device="cpu", dtype=torch.float32, progress=False)
    ids = char_tokenizer()(text, add_special_tokens=False)["input_ids"]
    out = model.generate(torch.tensor(ids), n, stop=[1])
    return char_tokenizer().decode(out[len(ids):].tolist(), skip_special_tokens=True)


def test_generate_streams_the_greedy_text_and_reports_speed(folder, capsys):
    args = ["generate", str(folder / "plain"), "--prompt", "the state of", "--max-new-tokens", "6",
            "--device", "cpu", "--dtype", "float32"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.rstrip("\n") == expected(folder / "plain", "the state of", 6)
    assert "prefill 12 tokens" in err and "tokens/s" in err and "peak GPU memory" in err


def test_chat_uses_the_folders_template(folder, capsys):
    assert main(["generate", str(folder / "chat"), "--prompt", "hi", "--chat", "--max-new-tokens",
                 "3", "--device", "cpu", "--dtype", "float32"]) == 0
    assert "prefill 19 tokens" in capsys.readouterr().err  # "<user>hi<assistant>"
    assert main(["generate", str(folder / "plain"), "--prompt", "hi", "--chat",
                 "--device", "cpu"]) == 1
    assert "has none" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--max-new-tokens", "0"], "at least 1"),
    (["--top-p", "1.5"], "--top-p"),
    (["--temperature", "-1"], "--temperature"),
])
def test_bad_arguments_fail_before_loading(folder, capsys, monkeypatch, extra, message):
    from mxfp4.models import GptOss

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(GptOss, "from_pretrained", no_load)
    assert main(["generate", str(folder / "plain"), "--prompt", "x", *extra]) == 1
    assert message in capsys.readouterr().err
