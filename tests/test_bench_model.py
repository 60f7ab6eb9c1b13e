"""`mxfp4 bench model`: arguments, the bytes of the floor by hand, a whole run of the suite on the
CPU with a tiny shape (the decoder runs eagerly, time.perf_counter times it), its JSON and markdown,
earlier rows of other shapes carried over, the transformers rows, and the Performance view.
"""

import json

import pytest
import torch

from mxfp4.bench import model as bm
from mxfp4.bench.cli import SUITES
from mxfp4.cli import build_parser, main
from mxfp4.models import GptOss, GptOssConfig

# two layers: one sliding (window 8), one full; every size a multiple of 64 (no padded rows)
TINY = dict(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_experts=8, experts_per_token=2,
            intermediate_size=64, head_dim=16, num_attention_heads=4, num_key_value_heads=2,
            sliding_window=8)
FAST = ["--device", "cpu", "--batches", "1,2", "--prefill-batches", "1", "--context", "10",
        "--prompt", "6", "--steps", "2", "--attention", "bf16", "--no-transformers"]


@pytest.fixture
def tiny(monkeypatch):
    """A shape `tiny` the suite can run on the CPU, with one warm-up and one timed prefill."""
    monkeypatch.setitem(bm.SHAPES, "tiny", lambda: GptOssConfig(**TINY))
    monkeypatch.setattr(bm, "WARMUP_STEPS", 1)
    monkeypatch.setattr(bm, "PREFILL_RUNS", 1)
    return "tiny"


@pytest.fixture
def quick(tiny, monkeypatch):
    """`tiny` with our decode and prefill timed as 2 ms and 5 ms: for the tests of what happens
    around the timing (the whole run is timed for real once, above the others)."""
    monkeypatch.setattr(bm, "time_decode", lambda *a: (2.0, 2.5))
    monkeypatch.setattr(bm, "time_prefill", lambda *a: 5.0)
    return tiny


def _args(*argv):
    return build_parser().parse_args(["bench", "model", *argv])


# -- arguments --------------------------------------------------------------------------------
def test_registered_with_the_issue_defaults():
    assert SUITES["model"][0] == "mxfp4.bench.model"
    a = _args()
    assert (a.shape, a.batches, a.prefill_batches, a.context, a.prompt) == (
        ["gpt-oss-120b"], [1, 8, 64, 256], [1, 8], 1024, 2048)
    assert a.attention == ["bf16", "mxfp4"] and a.transformers and a.out == "bench-model"
    b = _args("--shape", "gpt-oss-20b,gpt-oss-120b", "--attention", "mxfp4", "--no-transformers")
    assert (b.shape, b.attention, b.transformers) == (["gpt-oss-20b", "gpt-oss-120b"], ["mxfp4"], False)


@pytest.mark.parametrize("argv, message", [
    (["--shape", "gpt-oss-7b"], "unknown shape gpt-oss-7b; choose from gpt-oss-120b, gpt-oss-20b"),
    (["--shape", "gpt-oss-20b,gpt-oss-20b"], "a shape is named twice in 'gpt-oss-20b,gpt-oss-20b'"),
    (["--batches", "1,0"], "expected distinct positive integers, got '1,0'"),
    (["--batches", "1,1"], "expected distinct positive integers"),
    (["--batches", "8,x"], "expected positive integers separated by commas, got '8,x'"),
    (["--prefill-batches", "-1"], "expected distinct positive integers"),
    (["--context", "0"], "expected a positive integer, got '0'"),
    (["--steps", "many"], "expected a positive integer, got 'many'"),
    (["--attention", "fp8"], "expected bf16, mxfp4 or both, got 'fp8'"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        _args(*argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_real_shapes_need_a_gpu(tmp_path, capsys):
    assert main(["bench", "model", "--device", "cpu", "--out", str(tmp_path)]) == 1
    assert "gpt-oss-120b needs --device cuda" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# -- the floor --------------------------------------------------------------------------------
@pytest.mark.parametrize("quantize_attention", [None, "mxfp4"])
@pytest.mark.parametrize("batch, context", [(1, 5), (1, 30), (3, 30)])
def test_decode_bytes_by_hand(quantize_attention, batch, context):
    model = GptOss.from_config(GptOssConfig(**TINY), device="cpu", quantize_attention=quantize_attention)
    got = bm.decode_bytes(model, batch, context)
    H, I, E, k, V, kv, D, heads = 64, 64, 8, 2, 96, 2, 16, 4
    mx = lambda n, kk: n * kk // 2 + n * kk // 32  # noqa: E731  codes + one scale byte per 32
    dense = lambda n, kk: (mx(n, kk) if quantize_attention else 2 * n * kk) + 2 * n  # noqa: E731  + bf16 bias
    expert = mx(2 * I, H) + mx(H, I) + 2 * (2 * I + H)
    distinct = k if batch == 1 else E * (1 - (1 - k / E) ** batch)
    qkv = (heads + 2 * kv) * D
    want = {
        "experts": 2 * distinct * expert,
        "attention": 2 * (dense(qkv, H) + dense(H, heads * D)),
        "unembedding": mx(V, H) if quantize_attention else 2 * V * H,
        "kv_cache": batch * 2 * kv * D * 2 * (min(context, 8) + context),  # sliding, then full
        "other": 2 * 2 * (E * H + E + 2 * H + heads) + 2 * H + 2 * batch * H,
    }
    assert got.keys() == want.keys() | {"total"}
    for part, value in want.items():
        assert got[part] == pytest.approx(value, rel=1e-12), part
    assert got["total"] == pytest.approx(sum(want.values()))
    assert bm.floor_ms(got["total"]) == pytest.approx(got["total"] / 3.03e12 * 1e3)


def test_decode_bytes_at_batch_one_count_k_experts_exactly():
    model = GptOss.from_config(GptOssConfig(**TINY), device="cpu")
    assert bm.decode_bytes(model, 1, 4)["experts"] == 2 * 2 * bm.expert_bytes(model.blocks[0].mlp.moe)


def test_linear_bytes_refuses_what_it_cannot_count():
    with pytest.raises(TypeError, match="cannot count the bytes of a Conv1d"):
        bm.linear_bytes(torch.nn.Conv1d(2, 2, 1))


# -- a whole run ------------------------------------------------------------------------------
def test_a_whole_run_on_the_cpu_writes_json_and_markdown(tiny, tmp_path, capsys):
    assert main(["bench", "model", "--shape", tiny, *FAST, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "model.json").read_text())
    assert data["columns"] == bm.COLUMNS and data["environment"]["device"].startswith("CPU")
    assert {"date", "torch", "python"} <= data["environment"].keys()
    rows = data["rows"]
    assert [(r["path"], r["batch"]) for r in rows] == [("decode", 1), ("decode", 2), ("prefill", 1)]
    for r in rows:
        assert r["model"] == "tiny" and r["variant"] == "mxfp4 (bf16 attention)" and "error" not in r
        assert r["ms"] > 0 and r["peak_GB"] == ""
    d1, d2, p1 = rows
    assert d1["context"] == 10 and p1["prompt"] == 6 and p1["context"] == ""
    assert d2["tokens_per_s"] == pytest.approx(2e3 / d2["ms"])
    # the wall clock includes the host: a mean of positive times is at least half their median
    assert 0 < d1["wall_tokens_per_s"] <= 2 * d1["tokens_per_s"] and "wall_tokens_per_s" not in p1
    assert p1["tokens_per_s"] == pytest.approx(6e3 / p1["ms"])
    model = GptOss.from_config(GptOssConfig(**TINY), device="cpu")
    floor = bm.decode_bytes(model, 1, 10)["total"]
    assert d1["floor_GB"] == pytest.approx(floor / 1e9)
    assert d1["floor_frac"] == pytest.approx(bm.floor_ms(floor) / d1["ms"])
    md = (tmp_path / "model.md").read_text()
    assert md.startswith("# GPT-OSS whole model") and "| tiny | mxfp4 (bf16 attention) | decode | 2 |" in md
    assert "--shape tiny --batches 1,2 --context 10 --prompt 6" in md and "| experts_GB |" in md
    assert d1["floor_parts_GB"]["total"] == pytest.approx(d1["floor_GB"])
    assert f"| tiny | mxfp4 (bf16 attention) | {d1['floor_parts_GB']['experts']:.4g} |" in md
    out = capsys.readouterr().out
    assert "| model | variant | path | batch | ms |" in out and "wrote" in out


def test_rows_of_other_shapes_are_carried_over(quick, tmp_path, capsys):
    earlier = {"title": "t", "columns": bm.COLUMNS, "notes": "",
               "environment": {"date": "2026-01-02", "device": "NVIDIA H100 80GB HBM3"},
               "rows": [{"model": "gpt-oss-120b", "variant": "mxfp4 (bf16 attention)", "path": "decode",
                         "batch": 1, "ms": 2.4, "floor_ms": 1.66, "floor_parts_GB": dict(
                             experts=1.9, attention=1.91, unembedding=1.16, kv_cache=0.04, other=0.03,
                             total=5.04)},
                        {"model": "tiny", "path": "decode", "batch": 9, "ms": 1.0}]}
    (tmp_path / "model.json").write_text(json.dumps(earlier))
    assert main(["bench", "model", "--shape", quick, *FAST, "--batches", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "model.json").read_text())
    assert [(r["model"], r["batch"]) for r in data["rows"]] == [("gpt-oss-120b", 1), ("tiny", 1), ("tiny", 1)]
    assert "| gpt-oss-120b | mxfp4 (bf16 attention) | 1.9 |" in data["notes"]  # its floor parts too
    runs = data["environment"]["runs"]
    assert runs["gpt-oss-120b"] == "2026-01-02, NVIDIA H100 80GB HBM3" and runs["tiny"].endswith(
        data["environment"]["device"])
    capsys.readouterr()
    (tmp_path / "model.json").write_text("[1]")
    assert main(["bench", "model", "--shape", quick, *FAST, "--out", str(tmp_path)]) == 1
    assert "model.json is not a model benchmark record" in capsys.readouterr().err
    assert (tmp_path / "model.json").read_text() == "[1]"


def test_speedups_pair_transformers_with_ours():
    rows = [{"model": "m", "variant": "transformers (bf16)", "path": "decode", "batch": 1, "ms": 30.0},
            {"model": "m", "variant": "transformers (bf16)", "path": "prefill", "batch": 1, "ms": 200.0},
            {"model": "m", "variant": "mxfp4 (bf16 attention)", "path": "decode", "batch": 1, "ms": 2.0},
            {"model": "m", "variant": "mxfp4 (bf16 attention)", "path": "decode", "batch": 8, "ms": 4.0},
            {"model": "m", "variant": "mxfp4 (bf16 attention)", "path": "prefill", "batch": 1, "ms": 50.0}]
    bm.add_speedups(rows)
    assert [r.get("speedup") for r in rows] == [None, None, 15.0, None, 4.0]


def test_transformers_rows_on_the_cpu(quick, tmp_path, monkeypatch):
    monkeypatch.setattr(bm, "TRANSFORMERS_SHAPES", {quick})
    argv = [a for a in FAST if a != "--no-transformers"] + ["--batches", "1", "--steps", "16"]
    assert main(["bench", "model", "--shape", quick, *argv, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "model.json").read_text())["rows"]
    theirs = [r for r in rows if r["variant"] == "transformers (bf16)"]
    assert [(r["path"], r["batch"]) for r in theirs] == [("decode", 1), ("prefill", 1)]
    assert all(r["ms"] > 0 and "static cache" in r["config"] for r in theirs)
    ours = {r["path"]: r for r in rows if r["variant"] != "transformers (bf16)"}
    assert ours["decode"]["speedup"] == pytest.approx(theirs[0]["ms"] / 2.0)
    assert ours["prefill"]["speedup"] == pytest.approx(theirs[1]["ms"] / 5.0)
    assert theirs[1]["tokens_per_s"] == pytest.approx(6e3 / theirs[1]["ms"])


def test_transformers_model_has_our_shape_in_bf16():
    from mxfp4.bench.model_transformers import build

    c = GptOssConfig(**TINY)
    model = build(c, "cpu")
    cfg = model.config
    assert (cfg.num_local_experts, cfg.num_experts_per_tok, cfg.num_hidden_layers, cfg.layer_types) == (
        8, 2, 2, ["sliding_attention", "full_attention"])
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert sum(p.numel() for p in model.parameters()) == sum(
        t.numel() for t in GptOss.from_config(c, device="cpu").state_dict().values()
        if t.dtype != torch.uint8) + 2 * 8 * 3 * 64 * 64  # experts in bf16: one value per weight


# -- the Performance view ---------------------------------------------------------------------
def test_the_performance_view_reads_a_model_record(quick, tmp_path):
    from mxfp4.viz import benchmarks

    assert main(["bench", "model", "--shape", quick, *FAST, "--out", str(tmp_path)]) == 0
    (record,) = benchmarks.load([tmp_path])["benchmarks"]
    L = record["layout"]
    assert record["file"] == "model.json" and record["rows"][0]["model"] == "tiny"
    assert L["operation"] == ["path", "batch"] and L["default"] == "time_ms"
    keys = [q["key"] for q in L["quantities"]]
    assert "context" not in keys and "prompt" not in keys and "tokens_per_s" in keys
    (time_q,) = [q for q in L["quantities"] if q["key"] == "time_ms"]
    assert [(m["column"], m["mark"]) for m in time_q["members"]] == [("ms", False), ("floor_ms", True)]
    assert "wall_tokens_per_s" in keys


class _FakeHF:
    """Stands in for a transformers model: generate without a static cache only."""

    config = type("C", (), {"pad_token_id": 0, "_attn_implementation": "eager"})()

    def __init__(self, short=False):
        self.short, self.calls = short, []

    def generate(self, ids, max_new_tokens, **kwargs):
        self.calls.append(kwargs.get("cache_implementation"))
        if kwargs.get("cache_implementation") == "static":
            raise ValueError("no static cache here")
        n = max_new_tokens - (1 if self.short else 0)
        return torch.zeros(ids.shape[0], ids.shape[1] + n, dtype=torch.long)


def test_transformers_falls_back_to_its_default_cache_and_checks_the_tokens():
    from mxfp4.bench.model_transformers import Generate

    said = []
    gen = Generate(_FakeHF(), 12)
    ids = torch.zeros(1, 5, dtype=torch.long)
    gen.warm(ids, (1, 3), said.append)
    assert gen.model.calls == ["static", None, None] and not gen.static
    assert "static cache failed (ValueError: no static cache here); default cache" in gen.describe()
    assert said and "default cache" in said[0]
    with pytest.raises(RuntimeError, match="made 2 tokens, asked for 3"):
        Generate(_FakeHF(short=True), 12).warm(ids, (3,), said.append)
