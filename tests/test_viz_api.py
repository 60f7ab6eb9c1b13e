"""The visualizer's JSON API, in process: every endpoint with good and bad inputs.

Results are checked against the library itself (mxfp4.quantize, error_stats, matmul), so the page
can only show what the library does.
"""

import json
import math
import os

import pytest
import torch
from safetensors.torch import save_file
from starlette.testclient import TestClient

import mxfp4
from mxfp4.analysis import error_stats
from mxfp4.format import BLOCK_SIZE, E2M1_VALUES
from mxfp4.viz import api, benchmarks, models
from mxfp4.viz.app import LOOPBACK_HOSTS, VIEWS, create_app
from mxfp4.viz.validate import MAX_BODY_BYTES

JSON = {"content-type": "application/json"}
STORED = mxfp4.quantize(torch.randn(2, 3, 96, generator=torch.Generator().manual_seed(1)) * 0.01)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(96, 160, generator=g)
    w[5, 70] = 40.0  # an outlier: its block is the worst one
    blocks, scales = STORED.to_gpt_oss()
    save_file({"w": w.bfloat16(), "bias": torch.randn(50, generator=g),
               "w3": torch.randn(3, 4, 64, generator=g).half(),
               "ids": torch.arange(6, dtype=torch.int32),
               "mlp.experts_blocks": blocks.contiguous(), "mlp.experts_scales": scales.contiguous()},
              str(root / "one.safetensors"))
    (root / "hf").mkdir()
    save_file({"a.weight": torch.randn(8, 64, generator=g)}, str(root / "hf" / "model-1.safetensors"))
    save_file({"b.weight": torch.randn(16, 32, generator=g)}, str(root / "hf" / "model-2.safetensors"))
    (root / "hf" / "config.json").write_text("{}")
    (root / "notes.txt").write_text("not a model")
    (root / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    outside = tmp_path_factory.mktemp("outside")
    save_file({"secret": torch.ones(4)}, str(outside / "secret.safetensors"))
    os.symlink(outside / "secret.safetensors", root / "link.safetensors")
    os.symlink(outside, root / "linkdir")
    return root


@pytest.fixture(scope="module")
def bench_dirs(tmp_path_factory):
    checkout, package = tmp_path_factory.mktemp("checkout"), tmp_path_factory.mktemp("package")
    record = {"title": "Codec throughput", "environment": {"device": "TestGPU", "date": "2026-01-01"},
              "columns": ["op", "median_ms"], "rows": [{"op": "quantize", "median_ms": 1.5}], "notes": ""}
    (checkout / "codec.json").write_text(json.dumps(record))
    (package / "codec.json").write_text(json.dumps({**record, "title": "older copy"}))
    (package / "kernels.json").write_text(json.dumps({**record, "title": "Kernels"}))
    (package / "bad.json").write_text('{"title": 3}')
    return checkout, package


@pytest.fixture(scope="module")
def client(model_dir, bench_dirs):
    return TestClient(create_app(models_dir=str(model_dir), benchmark_dirs=list(bench_dirs)))


@pytest.fixture(scope="module")
def bare():
    return TestClient(create_app(benchmark_dirs=[]))


def ok(resp):
    assert resp.status_code == 200, resp.text
    return resp.json()


def err(resp, status, words):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and words.lower() in body["error"].lower(), body
    return body


# -- pages and the shell -------------------------------------------------------------------
def test_pages_and_static_assets(client):
    for path in ["/"] + [f"/{v}" for v in VIEWS]:
        r = client.get(path)
        assert r.status_code == 200 and 'id="nav"' in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert "http" not in r.text.replace('http-equiv', '')  # no CDN or remote asset
    for asset in ["/static/js/main.js", "/static/css/style.css"] + [f"/static/js/views/{v}.js" for v in VIEWS]:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/nowhere").status_code == 404
    err(client.get("/api/nowhere"), 404, "no API endpoint")
    err(client.get("/api/quantize"), 405, "use POST")


def test_trusted_hosts_block_dns_rebinding():
    c = TestClient(create_app(allowed_hosts=LOOPBACK_HOSTS), base_url="http://127.0.0.1:8765")
    assert c.get("/api/format").status_code == 200
    assert c.get("/api/format", headers={"host": "evil.example"}).status_code == 400


def test_format_comes_from_the_library(client):
    f = ok(client.get("/api/format"))
    assert [c["value"] for c in f["codes"]] == list(E2M1_VALUES)
    assert [c["bits"] for c in f["codes"]] == [format(i, "04b") for i in range(16)]
    assert f["scale_rules"] == ["floor", "ceil", "even", "mse"] and f["block_size"] == BLOCK_SIZE
    assert f["example"] == [2.5, -1.25, 0.75, 4.0]
    err(client.get("/api/format", params={"x": 1}), 400, "unknown parameter")


# -- block quantizer -----------------------------------------------------------------------
def test_quantize_seed_example(client):
    r = ok(client.post("/api/quantize", json={"values": [2.5, -1.25, 0.75, 4.0]}))
    assert [e["bits"] for e in r["elements"]] == ["0100", "1010", "0010", "0110"]
    assert r["scale"] == {"byte": 127, "bits": "01111111", "hex": "0x7F", "exponent": 0, "value": 1.0}
    assert [e["decoded"] for e in r["elements"]] == [2.0, -1.0, 1.0, 4.0]
    c = r["compression"]
    assert (c["bf16_bits"], c["mxfp4_bits"]) == (64, 24) and c["ratio"] == pytest.approx(8 / 3)
    assert (c["full_block"]["bf16_bits"], c["full_block"]["mxfp4_bits"]) == (512, 136)


@pytest.mark.parametrize("rule", ["floor", "ceil", "even", "mse"])
def test_quantize_matches_library(client, rule):
    values = [0.1 * i - 1.3 for i in range(32)] + [0.0]
    values = values[:32]
    values[7] = 6.5  # clips under floor and even (6.5 > 6 * 2^0)
    r = ok(client.post("/api/quantize", json={"values": values, "scale_rule": rule}))
    x = torch.tensor(values, dtype=torch.bfloat16)
    q = mxfp4.quantize(x, scale_rule=rule)
    assert r["scale"]["byte"] == int(q.scales[0])
    assert [e["decoded"] for e in r["elements"]] == q.dequantize().tolist()
    assert [e["input"] for e in r["elements"]] == x.float().tolist()  # rounded to BF16
    assert r["qsnr_db"] == pytest.approx(error_stats(x, q).qsnr_db)
    limit = 6 * r["scale"]["value"]
    assert [e["clipped"] for e in r["elements"]] == [abs(v) > limit for v in x.float().tolist()]
    if rule != "mse":  # mse may or may not pick the larger scale here
        assert any(e["clipped"] for e in r["elements"]) == (rule != "ceil")


def test_quantize_stochastic_is_seeded(client):
    body = {"values": [0.3, 1.1, -2.6, 5.0] * 8, "rounding": "stochastic", "scale_rule": "ceil"}
    a = ok(client.post("/api/quantize", json={**body, "seed": 5}))
    b = ok(client.post("/api/quantize", json={**body, "seed": 5}))
    assert a["elements"] == b["elements"]


@pytest.mark.parametrize("body, status, words", [
    ({}, 400, "values is required"),
    ({"values": "1,2"}, 400, "must be a list"),
    ({"values": []}, 400, "1 to 32 values"),
    ({"values": [1.0] * 33}, 400, "1 to 32 values"),
    ({"values": [1, "abc"]}, 400, "values[1] must be a number"),
    ({"values": [1, True]}, 400, "values[1] must be a number"),
    ({"values": [1, None]}, 400, "values[1] must be a number"),
    ({"values": [1e39]}, 400, "between"),
    ({"values": [1], "scale_rule": "round"}, 400, "scale_rule must be one of floor, ceil, even, mse"),
    ({"values": [1], "rounding": "up"}, 400, "rounding must be one of"),
    ({"values": [1], "seed": -1}, 400, "seed must be between"),
    ({"values": [1], "seed": 1.5}, 400, "whole number"),
    ({"values": [1], "colour": "red"}, 400, "unknown parameter"),
])
def test_quantize_rejects_bad_input(client, body, status, words):
    err(client.post("/api/quantize", json=body), status, words)


@pytest.mark.parametrize("raw, words", [
    (b'{"values": [1, NaN]}', "NaN is not a number"),
    (b'{"values": [Infinity]}', "Infinity is not a number"),
    (b'{"values": [1,', "not valid JSON"),
    (b'[1, 2]', "must be a JSON object"),
    (b'\xff\xfe', "not UTF-8"),
    (b'{"values": [' + b"9" * 5000 + b']}', "not JSON the API accepts"),
    (b'{"values": ' + b"[" * 200000 + b"]" * 200000 + b'}', "not JSON the API accepts"),
    (b'{"values": [1e400]}', "must be finite"),
])
def test_bad_bodies(client, raw, words):
    err(client.post("/api/quantize", content=raw, headers=JSON), 400, words)


def test_body_limits_and_content_type(client):
    big = json.dumps({"values": [1.0] * (MAX_BODY_BYTES // 4)}).encode()
    err(client.post("/api/quantize", content=big, headers=JSON), 413, "limit")
    chunks = (b" " * 65536 for _ in range(MAX_BODY_BYTES // 65536 + 2))  # chunked, no length
    err(client.post("/api/quantize", content=chunks, headers=JSON), 413, "limit")
    err(client.post("/api/quantize", content=b'{"values": [1]}', headers={"content-type": "text/plain"}),
        415, "application/json")


# -- value space, distribution, rules ------------------------------------------------------
def test_mapping_is_the_library_rounding_at_scale_1(client):
    m = ok(client.get("/api/mapping", params={"points": 301}))
    x, q = torch.tensor(m["x"]), torch.tensor(m["q"])
    assert len(x) == 301 and set(q.tolist()) <= set(E2M1_VALUES)
    assert bool((q[1:] >= q[:-1]).all())  # a step function
    assert m["error"] == pytest.approx((q - x).tolist(), abs=1e-6)
    assert q[x.abs() > 6].abs().eq(6).all()  # saturates
    err(client.get("/api/mapping", params={"lo": 2, "hi": 1}), 400, "below hi")
    err(client.get("/api/mapping", params={"points": "many"}), 400, "points must be a number")
    err(client.get("/api/mapping", params={"lo": "nan"}), 400, "finite")


def test_distribution(client):
    d = ok(client.post("/api/distribution", json={"sigma": 0.02, "block_size": 64, "n": 4096, "seed": 3}))
    assert sum(d["code_counts"]) == 4096 and len(d["code_counts"]) == 16
    x = api.sample("normal", 4096, 0.02, 3)
    assert d["qsnr_db"] == pytest.approx(error_stats(x, block_size=64).qsnr_db)
    assert sum(b["blocks"] for b in d["scale_exponents"]) == 4096 // 64
    err(client.post("/api/distribution", json={"block_size": 3}), 400, "power of two")
    err(client.post("/api/distribution", json={"n": 10 ** 8}), 400, "n must be between")
    err(client.post("/api/distribution", json={"distribution": "cauchy"}), 400, "distribution must be one of")
    err(client.post("/api/distribution", json={"sigma": 0}), 400, "sigma must be between")


def test_rules_compare_every_rule(client):
    r = ok(client.post("/api/rules", json={"distribution": "outliers", "n": 8192, "seed": 1}))
    assert [x["scale_rule"] for x in r["rules"]] == ["floor", "ceil", "even", "mse"]
    x = api.sample("outliers", 8192, 1.0, 1)
    for row in r["rules"]:
        s = error_stats(x, scale_rule=row["scale_rule"])
        assert row["qsnr_db"] == pytest.approx(s.qsnr_db)
        assert row["clipped"] == round(s.saturated_fraction * 8192)
    assert r["rules"][1]["clipped"] == 0  # ceil never clips
    given = ok(client.post("/api/rules", json={"values": [1.0, 2.0, 7.0, -3.0]}))
    assert given["n"] == 4 and given["distribution"] == "given values"
    err(client.post("/api/rules", json={"values": [1.0] * 20000}), 400, "values must have")
    err(client.post("/api/rules", json={"rounding": "fast"}), 400, "rounding must be one of")


# -- matmul, MoE, memory -------------------------------------------------------------------
def test_matmul_steps_end_at_library_matmul(client):
    r = ok(client.post("/api/matmul", json={"seed": 4}))
    assert len(r["steps"]) == 16 and r["steps_match_library"]
    A, B = torch.tensor(r["a"]), torch.tensor(r["b"])
    c = mxfp4.matmul(mxfp4.quantize(A, block_size=8), mxfp4.quantize(B, block_size=8))
    finals = [s for s in r["steps"] if s["last"]]
    assert [s["acc"] for s in finals] == pytest.approx(c.flatten().tolist(), abs=1e-6)
    s0 = r["steps"][0]
    assert s0["partial"] == pytest.approx(s0["scale_a"]["value"] * s0["scale_b"]["value"] * s0["dot_e2m1"])
    given = ok(client.post("/api/matmul", json={"m": 1, "n": 1, "k": 4, "block_size": 4,
                                                "a": [[1, 2, 3, 4]], "b": [[1, 0.5, -1, 2]]}))
    assert given["c_mx"] == [[1 + 1 - 3 + 8]] and given["c_float"] == [[7.0]]  # all exact in E2M1
    err(client.post("/api/matmul", json={"k": 30}), 400, "multiple of block_size")
    err(client.post("/api/matmul", json={"m": 9}), 400, "m must be between")
    err(client.post("/api/matmul", json={"m": 1, "a": [[1, 2]]}), 400, "a[0] must have 32 to 32")


def test_moe(client):
    r = ok(client.post("/api/moe", json={"tokens": 3, "experts": 8, "top_k": 2}))
    for t in r["per_token"]:
        assert len(t["chosen"]) == 2 and sum(c["weight"] for c in t["chosen"]) == pytest.approx(1)
        logits = torch.tensor(t["logits"])
        assert {c["expert"] for c in t["chosen"]} == set(torch.topk(logits, 2).indices.tolist())
        assert 0 < t["relative_error"] < 0.5  # MXFP4 experts are close to, not equal to, float
    assert r["expert_bytes"]["mxfp4"] < r["expert_bytes"]["bf16"] / 3
    err(client.post("/api/moe", json={"experts": 4, "top_k": 5}), 400, "top_k must be between 1 and 4")
    err(client.post("/api/moe", json={"hidden": 48}), 400, "multiple of the block size")


def test_memory_and_presets(client):
    p = ok(client.get("/api/memory/presets"))
    by = {x["name"]: x for x in p["presets"]}
    assert by["GPT-OSS-120B"]["total_params"] == pytest.approx(116.83e9, rel=1e-3)
    assert by["GPT-OSS-20B"]["total_params"] == pytest.approx(20.91e9, rel=1e-3)
    g = by["GPT-OSS-120B"]
    m = ok(client.post("/api/memory", json={k: g[k] for k in ("experts", "expert_params_m", "other_params_m")}))
    assert not m["fits_bf16"] and m["fits_mxfp4"] and m["bits_per_mxfp4_element"] == 4.25
    assert m["mxfp4_bytes"] == pytest.approx(g["experts"] * g["expert_params_m"] * 1e6 * 4.25 / 8
                                             + g["other_params_m"] * 2e6)
    rows = {r["model"].split()[0]: r for r in p["models"]}
    assert rows["7B"]["params"] == pytest.approx(6.74e9, rel=1e-3)
    assert rows["70B"]["params"] == pytest.approx(68.98e9, rel=1e-3)
    err(client.post("/api/memory", json={"experts": "many"}), 400, "experts must be a number")
    err(client.post("/api/memory", json={"expert_params_m": -1}), 400, "between")


# -- benchmarks ----------------------------------------------------------------------------
def test_benchmarks_checkout_wins_and_bad_files_are_skipped(client, bare):
    b = ok(client.get("/api/benchmarks"))
    titles = {r["file"]: (r["title"], r["source"]) for r in b["benchmarks"]}
    assert titles["codec.json"][0] == "Codec throughput" and titles["kernels.json"][0] == "Kernels"
    assert [s["file"] for s in b["skipped"]] == ["bad.json"]
    empty = ok(bare.get("/api/benchmarks"))
    assert empty["benchmarks"] == [] and "mxfp4 bench" in empty["how_to"]


def test_benchmark_sync(tmp_path, bench_dirs):
    out = benchmarks.sync(bench_dirs[0], tmp_path / "copy")
    assert [os.path.basename(p) for p in out] == ["codec.json"]
    assert json.loads((tmp_path / "copy" / "codec.json").read_text())["title"] == "Codec throughput"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.json").write_text("[]")
    with pytest.raises(ValueError, match="not a benchmark record"):
        benchmarks.sync(tmp_path / "src", tmp_path / "copy")


def test_benchmark_layout_groups_by_operation_in_plain_words():
    from mxfp4.viz.bench_layout import layout

    config = "BN=128 BM=64 BK=256 SPLIT_K=1 GROUP_N=8 num_warps=8"
    rows = [{"op": "linear", "shape": s, "M": m, "variant": v, "us": 10.0 + i, "cublas_us": 20.0 + m,
             "floor_us": 5.0 * m, "config": f"{config} {v}"}
            for i, (s, m, v) in enumerate([(s, m, v) for s in ("a", "b") for m in (1, 64) for v in ("x", "y")])]
    L = layout(list(rows[0]), rows)
    # op is the same in every row: not a label
    assert (L["operation"], L["series"], L["details"], L["facets"]) == (["shape", "M"], "variant", ["config"], [])
    (time,) = L["quantities"]
    assert time["words"] == "time (µs)" and time["better"] == "lower" and L["default"] == time["key"]
    assert [(m["name"], m["own"], m["mark"]) for m in time["members"]] == [
        ("mxfp4", True, False), ("cuBLAS", False, False), ("speed-of-light floor", False, True)]
    assert L["words"]["M"] == "M (rows of x)" and L["words"]["cublas_us"] == "cuBLAS (µs)"
    many = [{**r, "shape": s, "M": m} for s in "abc" for m in (1, 2, 4, 8, 16) for r in rows[:2]]
    assert layout(list(rows[0]), many)["facets"] == ["shape"]  # 15 operations: a select for the shape


# -- your model ----------------------------------------------------------------------------
def test_models_listing(client, bare):
    r = ok(client.get("/api/models"))
    paths = {e["path"]: e["kind"] for e in r["entries"]}
    assert paths == {"one.safetensors": "file", "broken.safetensors": "file", "hf": "folder",
                     "hf/model-1.safetensors": "file", "hf/model-2.safetensors": "file"}
    assert "link.safetensors" not in paths  # a symlink out of --models is not offered
    b = ok(bare.get("/api/models"))
    assert not b["configured"] and "--models" in b["how_to"]
    err(bare.get("/api/model", params={"path": "one.safetensors"}), 404, "--models")


def test_model_tensor_table(client):
    t = ok(client.get("/api/model", params={"path": "one.safetensors"}))
    kinds = {x["name"]: x["kind"] for x in t["tensors"]}
    assert kinds == {"w": "float", "bias": "float", "w3": "float", "ids": "other",
                     "mlp.experts_blocks": "mxfp4 (stored)", "mlp.experts_scales": "mxfp4 scales"}
    folder = ok(client.get("/api/model", params={"path": "hf"}))
    assert folder["files"] == 2 and {x["name"] for x in folder["tensors"]} == {"a.weight", "b.weight"}


def _tensor(model_dir, name):
    from safetensors.torch import load_file
    return load_file(str(model_dir / "one.safetensors"))[name].float()


def test_model_qsnr_per_rule(client, model_dir):
    r = ok(client.get("/api/model/qsnr", params={"path": "one.safetensors", "name": "w"}))
    w = _tensor(model_dir, "w")
    assert not r["sampled"] and r["elements_used"] == w.numel()
    for rule, value in r["qsnr_db"].items():
        assert value == pytest.approx(error_stats(w, scale_rule=rule).qsnr_db, abs=1e-6)


@pytest.mark.parametrize("name", ["w", "w3", "bias"])
def test_model_tensor_detail_streams_like_the_whole(client, model_dir, name, monkeypatch):
    x = _tensor(model_dir, name)
    whole = ok(client.get("/api/model/tensor", params={"path": "one.safetensors", "name": name, "rule": "even"}))
    x2 = x.reshape(-1, x.shape[-1])
    s = error_stats(x2, scale_rule="even")
    assert whole["qsnr_db"] == pytest.approx(s.qsnr_db, abs=1e-6)
    assert whole["clipped_fraction"] == pytest.approx(s.saturated_fraction)
    n_blocks = x2.shape[0] * -(-x2.shape[1] // BLOCK_SIZE)
    assert sum(b["blocks"] for b in whole["scale_exponents"]) == n_blocks
    assert sum(whole["code_counts"]) == x.numel()
    models._cache.clear()
    monkeypatch.setattr(models, "CHUNK_ELEMENTS", 2 * x.shape[-1])  # many small slices
    sliced = ok(client.get("/api/model/tensor", params={"path": "one.safetensors", "name": name, "rule": "even"}))
    assert sliced["qsnr_db"] == pytest.approx(whole["qsnr_db"], abs=1e-9)
    assert sliced["worst_blocks"] == whole["worst_blocks"] and sliced["heatmap"] == whole["heatmap"]


def test_worst_block_and_block_values(client, model_dir):
    d = ok(client.get("/api/model/tensor", params={"path": "one.safetensors", "name": "w"}))
    worst = d["worst_blocks"][0]
    assert (worst["row"], worst["block"]) == (5, 70 // BLOCK_SIZE)  # the outlier's block
    b = ok(client.get("/api/model/block", params={"path": "one.safetensors", "name": "w",
                                                  "row": 5, "block": worst["block"]}))
    w = _tensor(model_dir, "w")
    assert b["values"] == w[5, 64:96].tolist()
    assert worst["qsnr_db"] == pytest.approx(error_stats(w[5, 64:96]).qsnr_db, abs=1e-6)
    b3 = ok(client.get("/api/model/block", params={"path": "one.safetensors", "name": "w3", "row": 7, "block": 1}))
    assert b3["values"] == _tensor(model_dir, "w3").reshape(-1, 64)[7, 32:64].tolist()
    err(client.get("/api/model/block", params={"path": "one.safetensors", "name": "w", "row": 96}), 400, "outside")


def test_stored_mxfp4_tensor(client):
    p = {"path": "one.safetensors", "name": "mlp.experts_blocks"}
    d = ok(client.get("/api/model/tensor", params=p))
    assert d["stored"] and d["shape"] == [2, 3, 96] and (d["rows"], d["blocks_per_row"]) == (6, 3)
    want = {int(b) - 127: int(n) for b, n in zip(*torch.unique(STORED.scales, return_counts=True))}
    assert {e["exponent"]: e["blocks"] for e in d["scale_exponents"]} == want
    assert sum(d["code_counts"]) == STORED.numel()
    deq = STORED.dequantize().reshape(6, 96)
    for row, block in [(0, 0), (4, 2), (5, 1)]:
        b = ok(client.get("/api/model/block", params={**p, "row": row, "block": block}))
        assert b["values"] == deq[row, 32 * block:32 * block + 32].tolist()
    err(client.get("/api/model/block", params={**p, "row": 6}), 400, "outside")
    err(client.get("/api/model/qsnr", params=p), 400, "only non-empty float")


def test_large_tensor_is_read_in_slices(client, model_dir, monkeypatch):
    seen = []
    real_open = models._open

    class Spy:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            self.inner = self.f.__enter__()
            return self

        def __exit__(self, *a):
            return self.f.__exit__(*a)

        def get_slice(self, name):
            s = self.inner.get_slice(name)

            class Slice:
                def __getattr__(self, attr):  # get_shape, get_dtype
                    return getattr(s, attr)

                def __getitem__(self, idx):
                    out = s[idx]
                    seen.append(out.numel())
                    return out
            return Slice()

        def __getattr__(self, attr):  # keys(), metadata(); get_tensor would read it all
            if attr == "get_tensor":
                raise AssertionError("whole-tensor read")
            return getattr(self.inner, attr)

    monkeypatch.setattr(models, "_open", lambda p: Spy(real_open(p)))
    monkeypatch.setattr(models, "CHUNK_ELEMENTS", 1024)
    monkeypatch.setattr(models, "SAMPLE_ELEMENTS", 2048)
    models._cache.clear()
    ok(client.get("/api/model/tensor", params={"path": "one.safetensors", "name": "w", "rule": "floor"}))
    assert seen and max(seen) <= 1024 and sum(seen) == 96 * 160
    seen.clear()
    q = ok(client.get("/api/model/qsnr", params={"path": "one.safetensors", "name": "w"}))
    assert q["sampled"] and sum(seen) == q["elements_used"] <= 2048


@pytest.mark.parametrize("path, status, words", [
    ("../one.safetensors", 400, "'..' is not allowed"),
    ("hf/../../x.safetensors", 400, "'..' is not allowed"),
    ("/etc/passwd", 400, "absolute paths"),
    ("C:\\models\\x.safetensors", 400, "absolute paths"),
    ("link.safetensors", 403, "outside the models directory"),
    ("linkdir/secret.safetensors", 403, "outside the models directory"),
    ("missing.safetensors", 404, "does not exist"),
    ("notes.txt", 400, "only .safetensors"),
    ("broken.safetensors", 422, "cannot read"),
    ("a\x00b", 400, "NUL"),
    ("", 400, "non-empty"),
])
def test_model_paths_are_confined(client, path, status, words):
    err(client.get("/api/model", params={"path": path}), status, words)


def test_model_bad_tensor_requests(client):
    p = {"path": "one.safetensors"}
    err(client.get("/api/model/tensor", params=p), 400, "name is required")
    err(client.get("/api/model/tensor", params={**p, "name": "nope"}), 404, "no tensor named")
    err(client.get("/api/model/tensor", params={**p, "name": "ids"}), 400, "only non-empty float")
    err(client.get("/api/model/tensor", params={**p, "name": "w", "rule": "best"}), 400, "rule must be one of")
    err(client.get("/api/model/qsnr", params={"name": "w"}), 400, "path is required")


def test_cli_registers_viz():
    from mxfp4.cli import build_parser
    from mxfp4.viz.cli import _loopback

    args = build_parser().parse_args(["viz", "--models", "m", "--port", "9000"])
    assert (args.host, args.port, args.models, args.open) == ("127.0.0.1", 9000, "m", False)
    assert _loopback("127.0.0.1") and _loopback("localhost") and _loopback("::1")
    assert not _loopback("0.0.0.0") and not _loopback("example.com")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        create_app(models_dir="/definitely/not/here")


def test_no_nan_reaches_json(client):
    # an all-zero block quantizes exactly: QSNR is reported as null ("exact"), never NaN/inf
    r = ok(client.post("/api/quantize", json={"values": [0.0, 0.0]}))
    assert r["qsnr_db"] is None and r["scale"]["exponent"] == -127
    assert math.isfinite(r["compression"]["ratio"])


@pytest.mark.parametrize("method, url, body, words", [
    ("post", "/api/distribution", {"n": 2e6}, ["1,048,576", "2,000,000"]),
    ("post", "/api/memory", {"other_params_m": 3e7}, ["10,000,000", "30,000,000"]),
    ("post", "/api/quantize", {"values": [1e39]}, ["3.39 × 10^38"]),
    ("post", "/api/distribution", {"sigma": 1e-9}, ["0.000001", "1 × 10^-9"]),
    ("get", "/api/model/block", {"path": "one.safetensors", "name": "w", "row": 2**63}, ["4,611,686,018,427,387,904"]),
    ("post", "/api/rules", {"values": [0.5] * 16385}, ["16,384", "16,385"]),
])
def test_limits_are_written_as_numbers(client, method, url, body, words):
    r = client.post(url, json=body) if method == "post" else client.get(url, params=body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    assert "e+" not in message and "e-" not in message, message
    for w in words:
        assert w in message, message


def test_body_limit_is_written_as_a_number(client):
    r = client.post("/api/quantize", content=b"{" + b" " * MAX_BODY_BYTES + b"}", headers=JSON)
    assert r.status_code == 413 and "1,048,576 bytes" in r.json()["error"], r.text
