"""`mxfp4 quantize` / `mxfp4 eval`: every user error is caught before the work starts and
reported in one line naming the thing at fault, exit code != 0, no traceback (issue 20)."""

import argparse
import json
import os
import shutil

import pytest
import torch

from mx_tiny_models import save_tiny_folder, write_text
from mxfp4 import models_cli
from mxfp4.cli import build_parser, main


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("early")
    save_tiny_folder(base / "float")
    write_text(base / "text.txt")
    (base / "afile").write_text("x")
    return base


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def copy_folder(src, dst):
    shutil.copytree(src, dst)
    return dst


def one_line_error(err: str, needle: str) -> None:
    ours = [line for line in err.splitlines() if line.startswith("mxfp4 ")]  # (not transformers' bars)
    assert len(ours) == 1 and "Traceback" not in err, err
    assert needle in ours[0], ours[0]


@pytest.mark.parametrize("extra, needle", [
    (["-o", "{f}/afile"], "is a file"),
    (["-o", "{f}/afile/out"], "which is a file"),
    (["-o", "{f}/o1", "--json", "{f}/afile/s.json"], "--json"),
    (["-o", "{f}/o2", "--json", "{f}"], "is a folder"),
    (["-o", "{f}/o3", "--include", "*.nothing_like_this"], "matches no Linear"),
    (["-o", "{f}/o4", "--exclude", "re:(unclosed"], "not a valid regular expression"),
    (["-o", "{f}/o5", "--exclude", "*"], "nothing to convert"),
    (["-o", "{f}/o6", "--method", "mse", "--scale-rule", "ceil"], "--scale-rule is not used"),
    (["-o", "{f}/o7", "--device", "cuda:7"] if not torch.cuda.is_available() else
     ["-o", "{f}/o7", "--device", "nonsense"], "--device"),
])
def test_quantize_refuses_before_any_work(folder, capsys, extra, needle):
    code, _, err = run(capsys, "quantize", folder / "float", *[a.format(f=folder) for a in extra])
    assert code == 1
    one_line_error(err, needle)
    assert not any(n.startswith(("o", ".o")) and n != "afile" for n in os.listdir(folder))


def test_gptq_with_a_bad_json_path_fails_before_calibrating(folder, capsys, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("calibration started before the --json path was checked")

    monkeypatch.setattr(models_cli, "calibration_batches", no_work)
    code, _, err = run(capsys, "quantize", folder / "float", "-o", folder / "g", "--method",
                       "gptq", "--calib", folder / "text.txt", "--json", folder / "afile" / "x")
    assert code == 1
    one_line_error(err, "sits under")


def test_an_already_quantized_input_is_refused(folder, capsys):
    for fmt in ("mxfp4", "compressed-tensors"):
        q = folder / f"q-{fmt}"
        assert run(capsys, "quantize", folder / "float", "-o", q, "--format", fmt)[0] == 0
        code, _, err = run(capsys, "quantize", q, "-o", folder / f"qq-{fmt}")
        assert code == 1
        one_line_error(err, "already")


def test_a_config_that_disagrees_with_the_weights_is_refused(folder, tmp_path, capsys):
    src = copy_folder(folder / "float", tmp_path / "bad")
    config = json.load(open(src / "config.json"))
    config["intermediate_size"] = 96
    json.dump(config, open(src / "config.json", "w"))
    code, _, err = run(capsys, "quantize", src, "-o", tmp_path / "out")
    assert code == 1
    one_line_error(err, "disagrees with its weights")
    assert sorted(os.listdir(tmp_path)) == ["bad"]


def test_a_short_calibration_text_says_how_many_tokens_it_has(folder, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("the state of our union " * 20)  # 460 characters: 460 tokens
    code, _, err = run(capsys, "quantize", folder / "float", "-o", tmp_path / "out", "--method",
                       "gptq", "--calib", short, "--calib-tokens", "1024", "--calib-seq", "128")
    assert code == 1
    one_line_error(err, "has 460 tokens")
    assert "--calib-tokens 384" in err  # three whole sequences of 128


def test_calibration_errors_name_the_options_that_fit(folder, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("the union " * 2)  # 20 tokens: not one sequence of 128
    code, _, err = run(capsys, "quantize", folder / "float", "-o", tmp_path / "a", "--method",
                       "gptq", "--calib", short, "--calib-tokens", "1024", "--calib-seq", "128")
    assert code == 1
    one_line_error(err, "smaller --calib-seq")
    code, _, err = run(capsys, "quantize", folder / "float", "-o", tmp_path / "b", "--method",
                       "gptq", "--calib", short, "--calib-tokens", "2", "--calib-seq", "2")
    assert code == 1
    one_line_error(err, "--calib-tokens / --calib-seq must give at least 2 tokens")


def test_extra_tensors_such_as_rotary_tables_are_let_through(folder, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    src = copy_folder(folder / "float", tmp_path / "extra")
    tensors = load_file(src / "model.safetensors")
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.rand(16)
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    assert run(capsys, "quantize", src, "-o", tmp_path / "q")[0] == 0


@pytest.mark.parametrize("extra, needle", [
    (["--context", "512"], "longer than the 256 positions"),
    (["--context", "64", "--plot", "{f}/afile/p.png", "--compare", "{f}/float"], "--plot"),
    (["--context", "64", "--json", "{f}/afile/e.json"], "--json"),
])
def test_eval_refuses_before_any_work(folder, capsys, extra, needle):
    code, _, err = run(capsys, "eval", folder / "float", "--text", folder / "text.txt",
                       *[a.format(f=folder) for a in extra])
    assert code == 1
    one_line_error(err, needle)


def test_eval_text_that_is_a_folder(folder, capsys):
    code, _, err = run(capsys, "eval", folder / "float", "--text", folder, "--context", "64")
    assert code == 1
    one_line_error(err, "is a folder")


def test_ctrl_c_is_one_line_and_debug_shows_the_traceback(folder, capsys, monkeypatch):
    import mxfp4.evaluate

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mxfp4.evaluate, "perplexity", interrupted)
    args = ("eval", folder / "float", "--text", folder / "text.txt", "--context", "64")
    code, _, err = run(capsys, *args)
    assert code == 130
    one_line_error(err, "interrupted")

    def bug(*a, **k):
        raise KeyError("surprise")

    monkeypatch.setattr(mxfp4.evaluate, "perplexity", bug)
    code, _, err = run(capsys, *args)
    assert code == 1
    one_line_error(err, "--debug shows the traceback")
    with pytest.raises(KeyError):
        main(["--debug", *map(str, args)])


def test_json_dash_writes_json_to_stdout_and_tables_to_stderr(folder, capsys):
    code, out, err = run(capsys, "quantize", folder / "float", "-o", folder / "j", "--json", "-")
    assert code == 0
    summary = json.loads(out)
    assert summary["format"] == "mxfp4" and len(summary["layers"]) == 14
    assert "layers converted" in err


def test_piped_tables_are_not_folded_to_80_columns(folder, capsys):
    code, out, _ = run(capsys, "quantize", folder / "float", "-o", folder / "w")
    assert code == 0
    line = next(l for l in out.splitlines() if "layers converted" in l)
    assert len(line) > 80 and line.rstrip().endswith(("(mxfp4) on cpu", "(mxfp4) on cuda"))
    assert any("model.layers.0.self_attn.q_proj" in l for l in out.splitlines())


def test_auto_dtype_keeps_the_stored_dtype(folder, tmp_path, capsys):
    from safetensors.torch import load_file

    from mx_tiny_models import tiny_gemma3

    src = tmp_path / "bf16"
    tiny_gemma3().to(torch.bfloat16).save_pretrained(src)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (src / name).write_bytes((folder / "float" / name).read_bytes())
    code, _, _ = run(capsys, "quantize", src, "-o", tmp_path / "q")  # on the CPU too
    assert code == 0
    kept = [t for t in load_file(tmp_path / "q" / "model.safetensors").values()
            if t.is_floating_point()]
    assert kept and all(t.dtype == torch.bfloat16 for t in kept)


def test_dtype_converts_the_tensors_kept_in_float(folder, capsys):
    from safetensors.torch import load_file

    code, _, _ = run(capsys, "quantize", folder / "float", "-o", folder / "bf", "--dtype",
                     "bfloat16")
    assert code == 0
    tensors = load_file(folder / "bf" / "model.safetensors")
    kept = [t for k, t in tensors.items() if t.is_floating_point()]
    assert kept and all(t.dtype == torch.bfloat16 for t in kept)
    assert json.load(open(folder / "bf" / "config.json"))["dtype"] == "bfloat16"


def _options(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {a}", h, f, d) for a, h, f, d in _options(sub))
        elif action.option_strings and action.dest not in ("help", "version"):
            yield action.option_strings[-1], action.help, parser.formatter_class, action.default


def test_every_option_has_help_with_its_default():
    def shows_default(text, fmt, default):
        return (issubclass(fmt, argparse.ArgumentDefaultsHelpFormatter) or "default" in text
                or default in (None, False))  # a flag, or an option that is off unless given

    missing = [name for name, text, fmt, default in _options(build_parser())
               if not text or not shows_default(text, fmt, default)]
    assert missing == []


def test_quantize_and_eval_run_where_asked():
    args = argparse.Namespace(device="auto", dtype="auto")
    device, dtype = models_cli.resolve_device(args)
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert dtype is (None if device.type == "cuda" else torch.float32)
    args = argparse.Namespace(device="cpu", dtype="bfloat16")
    assert models_cli.resolve_device(args) == (torch.device("cpu"), torch.bfloat16)
