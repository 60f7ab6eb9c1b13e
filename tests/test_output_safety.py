"""`mxfp4 quantize` and the save functions never lose or mix up a user's model (issue 20).

Each test reproduces one way an earlier version destroyed or mixed models and still exited 0.
"""

import hashlib
import json
import os
import signal

import pytest
import torch

from mx_tiny_models import save_tiny_folder, tiny_gemma3
from mxfp4.cli import main
from mxfp4.io import hf as hf_io
from mxfp4.io.output_folder import check_output_folder, staged_folder


@pytest.fixture(autouse=True)
def interrupts_on():
    """A job started in the background by a shell without job control begins with SIGINT
    ignored, and the code rightly leaves an ignored signal alone; these tests send SIGINT, so
    they run with Python's default handler."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def snapshot(folder) -> dict:
    """{relative path: sha256} of every file under folder (None: the folder does not exist)."""
    if not os.path.exists(folder):
        return None
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def leftovers(parent) -> list:
    return [n for n in os.listdir(parent) if n.endswith((".partial", ".old"))]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    save_tiny_folder(base / "A")  # one model.safetensors
    model = tiny_gemma3(seed=1)
    model.save_pretrained(base / "B", max_shard_size="100KB")  # several shards and an index
    save_tiny_folder(base / "tok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (base / "B" / name).write_bytes((base / "tok" / name).read_bytes())
    return base


def test_output_that_is_a_symlink_to_the_input_is_refused(models, tmp_path, capsys):
    (tmp_path / "link").symlink_to(models / "A")
    (tmp_path / "up").symlink_to(models)  # resolves to the folder that holds the input
    before = snapshot(models / "A")
    for out in ("link", "link/sub", "up"):
        assert main(["quantize", str(models / "A"), "-o", str(tmp_path / out), "--overwrite"]) == 1
        assert "the input" in capsys.readouterr().err
    assert snapshot(models / "A") == before


def test_a_reused_output_folder_is_refused_then_replaced_whole(models, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["quantize", str(models / "A"), "-o", str(out)]) == 0
    first = snapshot(out)
    assert main(["quantize", str(models / "B"), "-o", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err and snapshot(out) == first
    assert main(["quantize", str(models / "B"), "-o", str(out), "--overwrite"]) == 0
    files = set(snapshot(out))
    assert "model.safetensors" not in files  # A's single file does not linger beside B's shards
    index = json.load(open(out / "model.safetensors.index.json"))
    assert set(index["weight_map"].values()) == {f for f in files if f.endswith(".safetensors")}
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_leaves_the_previous_export_exactly_as_it_was(models, tmp_path, capsys,
                                                                   monkeypatch, signum):
    out = tmp_path / "X"
    assert main(["quantize", str(models / "A"), "-o", str(out), "--format",
                 "compressed-tensors"]) == 0
    before = snapshot(out)
    real_save, calls = hf_io._save, []

    def save_then_signal(tensors, path):
        real_save(tensors, path)
        calls.append(path)
        if len(calls) == 2:  # after two of B's shards are on disk
            signal.raise_signal(signum)

    monkeypatch.setattr(hf_io, "_save", save_then_signal)
    code = main(["quantize", str(models / "B"), "-o", str(out), "--format", "compressed-tensors",
                 "--overwrite"])
    assert code == 128 + signum and len(calls) == 2
    assert "interrupted" in capsys.readouterr().err
    assert snapshot(out) == before and leftovers(tmp_path) == []


def test_an_error_midway_leaves_nothing_behind(models, tmp_path, monkeypatch):
    def fail(tensors, path):
        raise OSError("disk full")

    monkeypatch.setattr(hf_io, "_save", fail)
    assert main(["quantize", str(models / "A"), "-o", str(tmp_path / "new")]) == 1
    assert os.listdir(tmp_path) == []


def test_transformers_refuses_the_default_output_instead_of_random_weights(models, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "q"
    assert main(["quantize", str(models / "A"), "-o", str(out)]) == 0
    config = json.load(open(out / "config.json"))
    assert "mxfp4.load_quantized" in config["quantization_config"]["load_with"]
    with pytest.raises(ValueError, match="quant_method"):
        AutoModelForCausalLM.from_pretrained(out)
    from mxfp4 import load_quantized

    assert load_quantized(out) is not None  # our own loader still reads it


def test_save_functions_write_whole_folders_and_refuse_non_empty_ones(tmp_path):
    from mxfp4 import load_quantized, save_quantized
    from mxfp4.nn import quantize_model

    model = tiny_gemma3()
    quantize_model(model)
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        save_quantized(model, target)
    assert snapshot(target) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}
    save_quantized(model, target, overwrite=True)
    assert "notes.txt" not in os.listdir(target) and load_quantized(target) is not None
    assert leftovers(tmp_path) == []


def test_staged_folder_keeps_the_target_until_the_block_succeeds(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_folder(target, overwrite=True) as tmp:
        (tmp_path / "t" / "old.txt").read_text()  # the old folder is still whole meanwhile
        open(os.path.join(tmp, "new.txt"), "w").write("new")
        raise RuntimeError("boom")
    assert os.listdir(target) == ["old.txt"] and leftovers(tmp_path) == []
    with staged_folder(target, overwrite=True) as tmp:
        open(os.path.join(tmp, "new.txt"), "w").write("new")
    assert os.listdir(target) == ["new.txt"] and leftovers(tmp_path) == []
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o700)  # not mkdtemp's private mode
    nested = tmp_path / "a" / "b"
    with staged_folder(nested) as tmp:
        open(os.path.join(tmp, "x"), "w").write("x")
    assert os.listdir(nested) == ["x"]


def test_bad_destinations_are_named(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_output_folder(f)
    with pytest.raises(ValueError, match="which is a file"):
        check_output_folder(f / "sub")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root may write anywhere
    with pytest.raises(ValueError, match="not writable"):
        check_output_folder(tmp_path / "new")


def test_nan_weights_are_named_and_leave_no_output(tmp_path):
    from safetensors.torch import load_file, save_file

    src = tmp_path / "nan"
    save_tiny_folder(src)
    tensors = load_file(src / "model.safetensors")
    name = next(k for k in tensors if k.endswith("mlp.up_proj.weight"))
    tensors[name][3, 5] = float("nan")
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        hf_io.quantize_folder(str(src), str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["nan"]
    assert torch.isnan(load_file(src / "model.safetensors")[name]).any()  # input untouched


def test_a_signal_during_the_move_waits_until_the_folder_is_whole(tmp_path, monkeypatch):
    from mxfp4.io import output_folder

    target = tmp_path / "t"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_rename = os.rename

    def rename_then_signal(a, b):  # SIGINT right between taking the old folder away and the move
        real_rename(a, b)
        if str(b).endswith(".old"):
            os.kill(os.getpid(), signal.SIGINT)  # to the process: any of torch's threads may get it

    monkeypatch.setattr(output_folder.os, "rename", rename_then_signal)
    with pytest.raises(output_folder.Interrupted) as caught:
        with staged_folder(target, overwrite=True) as tmp:
            open(os.path.join(tmp, "new.txt"), "w").write("new")
    assert caught.value.completed and os.listdir(target) == ["new.txt"]
    assert leftovers(tmp_path) == []


def test_a_folder_that_appears_meanwhile_is_not_replaced_without_overwrite(tmp_path):
    target = tmp_path / "t"
    with pytest.raises(ValueError, match="appeared"):
        with staged_folder(target) as tmp:
            target.mkdir()  # another run wrote here in the meantime
            (target / "precious.txt").write_text("keep")
            open(os.path.join(tmp, "new.txt"), "w").write("new")
    assert os.listdir(target) == ["precious.txt"] and leftovers(tmp_path) == []


def test_an_ignored_signal_stays_ignored_while_writing(tmp_path):
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with staged_folder(tmp_path / "t") as tmp:
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            signal.raise_signal(signal.SIGTERM)  # ignored, as the caller asked
            open(os.path.join(tmp, "x"), "w").write("x")
        assert os.listdir(tmp_path / "t") == ["x"]
    finally:
        signal.signal(signal.SIGTERM, previous)
