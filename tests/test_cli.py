"""The `mxfp4` command."""

import json
import subprocess
import sys

from mxfp4 import __version__
from mxfp4.cli import main


def test_version_and_help(capsys):
    for argv, text in ((["--version"], __version__), (["--help"], "demo")):
        try:
            main(argv)
        except SystemExit as e:
            assert e.code == 0
        assert text in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: mxfp4" in capsys.readouterr().out


def test_demo_shows_the_seed_example(capsys):
    assert main(["demo", "--rows", "8"]) == 0
    out = capsys.readouterr().out
    for code in ("0100", "1010", "0010", "0110"):
        assert code in out
    assert "scale byte 127 = 1.0" in out and "QSNR" in out and "mse" in out


def test_bench_quantize_writes_results(tmp_path, capsys):
    assert main(["bench", "quantize", "--size", "256", "--repeats", "2", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "codec-cpu.json").read_text())
    assert {r["op"] for r in data["rows"]} == {"quantize", "dequantize"}
    assert all(r["M_elements_per_s"] > 0 for r in data["rows"])
    assert data["environment"]["torch"] and "CPU" in data["environment"]["device"]
    assert "| op |" in (tmp_path / "codec-cpu.md").read_text()


def test_python_dash_m_mxfp4_is_the_command(capsys):
    out = subprocess.run([sys.executable, "-m", "mxfp4", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    try:
        main(["--help"])
    except SystemExit:
        pass
    assert out.stdout == capsys.readouterr().out and out.stdout.startswith("usage: mxfp4 ")
    bad = subprocess.run([sys.executable, "-m", "mxfp4", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


def test_errors_are_reported_not_raised(capsys):
    assert main(["bench", "quantize", "--size", "64", "--rules", "nope", "--out", ""]) == 1
    assert "scale_rule must be one of" in capsys.readouterr().err
