"""`mxfp4 bench`: where results go, help text, and a bad --out caught before any work."""

import argparse
import json
import os

import pytest

from mxfp4.bench import codec
from mxfp4.bench.cli import SUITES
from mxfp4.cli import build_parser, main


def _subcommands(parser) -> dict:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_results_go_to_a_folder_named_for_the_suite_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "quantize", "--size", "64", "--repeats", "1", "--rules", "floor"]) == 0
    data = json.loads((tmp_path / "bench-quantize" / "codec-cpu.json").read_text())
    assert {r["op"] for r in data["rows"]} == {"quantize", "dequantize"}
    assert (tmp_path / "bench-quantize" / "codec-cpu.md").is_file()
    assert os.listdir(tmp_path) == ["bench-quantize"]  # nothing in ./docs


def test_every_suite_defaults_to_its_own_folder():
    parser = build_parser()
    for suite in SUITES:
        assert parser.parse_args(["bench", suite]).out == f"bench-{suite}"


def test_every_option_has_help_that_shows_its_default():
    for name, parser in _subcommands(_subcommands(build_parser())["bench"]).items():
        text = " ".join(parser.format_help().split())  # argparse wraps long lines
        for action in parser._actions[1:]:  # after -h
            assert action.help, f"bench {name} {action.option_strings}: no help"
            assert f"(default: {action.default})" in text, f"bench {name} {action.option_strings}"


@pytest.mark.parametrize("suite", list(SUITES))
def test_a_file_as_out_fails_before_any_work(suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(codec, "quantize", lambda *a, **k: pytest.fail("the benchmark started"))
    target = tmp_path / "results.json"
    target.write_text("{}")
    for out in (target, target / "sub"):
        assert main(["bench", suite, "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(out) in err[0] and "is not a folder" in err[0], err
    assert target.read_text() == "{}"


def test_a_folder_that_is_not_writable_fails_before_any_work(tmp_path, monkeypatch, capsys):
    # os.access stands in for the permissions: a test running as root may write anywhere
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: real_access(p, mode, **kw)
                        and str(p) != str(tmp_path))
    monkeypatch.setattr(codec, "quantize", lambda *a, **k: pytest.fail("the benchmark started"))
    assert main(["bench", "quantize", "--out", str(tmp_path / "new")]) == 1
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'new'}: {tmp_path} is not writable" in err
    assert not (tmp_path / "new").exists()
