"""The visualizer's Training view: the run listing and curves of /api/training, `mxfp4 viz --runs`,
bad and corrupt inputs, and the view in a real browser (Playwright, as test_viz_browser.py).

The run folder is a real `mxfp4 train lm --config tiny` run of a few steps on generated text; the
recorded results file has the shape benchmarks/qat_gemma.py writes (loss logs under named arms).
"""

import json
import math

import pytest
from playwright.sync_api import expect
from starlette.testclient import TestClient
from test_viz_browser import browser, open_view, page, serve, shot  # noqa: F401 (fixtures)

from mxfp4.cli import build_parser, main
from mxfp4.viz import benchmarks, training
from mxfp4.viz.app import create_app

WORDS = "the of and to in a is that for it as was with be by on not he this are or his from".split()


def val_log(losses, every=10, batch=2, seq=8):
    return {"settings": {"batch": batch, "seq": seq}, "val": [{"step": every * (i + 1), "loss": v}
                                                               for i, v in enumerate(losses)]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder of runs: a real tiny run, one under way, a truncated loss.json, a wrong one."""
    root = tmp_path_factory.mktemp("runs")
    text = root.parent / "text.txt"
    text.write_text("\n\n".join(" ".join(WORDS[(7 * i + 3 * j) % len(WORDS)] for j in range(90))
                                for i in range(40)))
    rc = main(["train", "lm", "--config", "tiny", "--text", str(text), "-o", str(root / "tiny"),
               "--steps", "6", "--batch", "2", "--seq", "32", "--eval-every", "3", "--device", "cpu"])
    assert rc == 0
    (root / "going" / "checkpoint").mkdir(parents=True)
    going = {"tokens_per_step": 16, "train": [{"step": s, "loss": 4.0 - s / 10} for s in range(1, 5)],
             "val": [{"step": 2, "loss": 3.9}]}
    (root / "going" / "checkpoint" / "loss.json").write_text(json.dumps(going))
    (root / "cut").mkdir()
    full = (root / "tiny" / "loss.json").read_text()
    (root / "cut" / "loss.json").write_text(full[: len(full) // 2])  # cut short while written
    (root / "wrong").mkdir()
    (root / "wrong" / "loss.json").write_text(json.dumps({"train": [{"step": "one", "loss": 2}]}))
    return root


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    d = tmp_path_factory.mktemp("recorded")
    (d / "training-gemma.json").write_text(json.dumps({
        "model": "Gemma test", "notes": ["QAT against a float control", "CPU"],
        "rtn": {"perplexity": 30.0},
        "arms": {"qat-floor": {"perplexity": 25.0, "run": {**val_log([3.2, 3.0, 2.9]), "train_loss_last10_mean": 3.05}},
                 "float-control": {"perplexity": 24.0, "run": val_log([3.1, 2.9, 2.8])}}}))
    (d / "training-list.json").write_text(json.dumps({
        "title": "Recipe arms", "runs": [{"label": "bf16", "tokens_per_step": 4096,
                                          "train": [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.5}],
                                          "val": [{"step": 2, "loss": 4.6}]}]}))
    (d / "training-broken.json").write_text('{"arms": {"x": {"val": [{"step": 1, "lo')
    (d / "training-empty.json").write_text(json.dumps({"title": "no curves", "rows": []}))
    (d / "kernels.json").write_text(json.dumps({"title": "Kernels", "columns": ["op"], "rows": [{"op": "x"}]}))
    return d


@pytest.fixture(scope="module")
def client(runs, recorded):
    return TestClient(create_app(benchmark_dirs=[recorded], run_dirs=[runs]))


def ok(resp):
    assert resp.status_code == 200, resp.text
    return resp.json()


def by_label(listing):
    return {r["label"]: r for r in listing["runs"]}


def test_a_real_run_folder_is_listed_with_its_final_losses(client, runs):
    listing = ok(client.get("/api/training"))
    run = by_label(listing)["tiny"]
    log = json.loads((runs / "tiny" / "loss.json").read_text())
    assert run["source"] == "folder" and run["what"] == "recipe bf16, tiny model"
    assert run["steps"] == 6 and run["tokens_per_step"] == 64 and run["tokens"] == 6 * 64
    assert run["final_train"] == pytest.approx(sum(r["loss"] for r in log["train"]) / 6)
    assert run["final_val"] == log["val"][-1]["loss"] and run["final_val_step"] == 6
    assert run["in_progress"] is False and run["diverged_at"] is None
    curve = ok(client.get("/api/training/run", params={"id": run["id"]}))
    assert curve["train"] == {"step": [r["step"] for r in log["train"]], "loss": [r["loss"] for r in log["train"]]}
    assert curve["val"] == {"step": [3, 6], "loss": [r["loss"] for r in log["val"]]}
    assert curve["averaged"] == 1 and curve["tokens_per_step"] == 64


def test_a_run_under_way_is_read_from_its_checkpoint(client):
    run = by_label(ok(client.get("/api/training")))["going"]
    assert run["in_progress"] is True and run["steps"] == 4 and run["tokens"] == 64
    assert run["final_train"] == pytest.approx((3.9 + 3.8 + 3.7 + 3.6) / 4)


def test_recorded_results_name_each_arm(client):
    listing = ok(client.get("/api/training"))
    runs = by_label(listing)
    qat, control, bf16 = runs["qat-floor"], runs["float-control"], runs["bf16"]
    assert qat["source"] == "recorded" and qat["group"] == "training-gemma.json"
    assert qat["final_val"] == 2.9 and qat["final_train"] == 3.05 and qat["steps"] == 30
    assert qat["tokens_per_step"] == 16 and control["final_val"] == 2.8 and control["final_train"] is None
    assert bf16["final_train"] == 4.75 and bf16["tokens"] == 8192
    files = {f["name"]: f for f in listing["files"]}
    assert files["training-gemma.json"]["title"] == "Gemma test"
    assert files["training-gemma.json"]["notes"] == "QAT against a float control; CPU"
    curve = ok(client.get("/api/training/run", params={"id": control["id"]}))
    assert curve["val"]["loss"] == [3.1, 2.9, 2.8] and curve["train"]["step"] == []


def test_corrupt_files_are_reported_not_fatal(client):
    listing = ok(client.get("/api/training"))
    runs = by_label(listing)
    assert "not valid JSON" in runs["cut"]["problem"] and "final_val" not in runs["cut"]
    assert "'train' entry 0 is not a {step, loss} pair" in runs["wrong"]["problem"]
    problems = {p["where"]: p["reason"] for p in listing["problems"]}
    assert "not valid JSON" in problems["training-broken.json"]
    assert "no loss log" in problems["training-empty.json"]
    resp = client.get("/api/training/run", params={"id": runs["cut"]["id"]})
    assert resp.status_code == 422 and "not valid JSON" in resp.json()["error"]
    assert client.get("/api/training", params={"x": 1}).status_code == 400
    # the Performance view leaves training files to this view: none is "skipped" there
    bench = ok(client.get("/api/benchmarks"))
    assert [b["file"] for b in bench["benchmarks"]] == ["kernels.json"] and bench["skipped"] == []


@pytest.mark.parametrize("run_id,status,words", [
    (None, 400, "id is required"),
    ("tiny", 400, "id is required"),
    ("folder:0:../../etc", 404, "no run folder"),
    ("folder:0:/etc", 404, "no run folder"),
    ("folder:7:tiny", 404, "ids come from /api/training"),
    ("recorded:kernels.json:0", 404, "no recorded run"),
    ("recorded:training-gemma.json:9", 404, "no recorded run"),
    ("other:0:x", 404, "ids come from"),
])
def test_unknown_run_ids(client, run_id, status, words):
    resp = client.get("/api/training/run", params={} if run_id is None else {"id": run_id})
    assert resp.status_code == status and words in resp.json()["error"], resp.text


def test_long_and_diverged_logs(tmp_path):
    n = 5000
    train = [{"step": s, "loss": 10.0 / s} for s in range(1, n + 1)]
    train[-1]["loss"] = math.nan  # json.dump writes NaN, as the loop logs a non-finite loss
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / "loss.json").write_text(json.dumps(
        {"tokens_per_step": 8, "train": train, "val": [{"step": n, "loss": math.inf}], "diverged_at": n}))
    c = TestClient(create_app(benchmark_dirs=[], run_dirs=[tmp_path / "long"]))
    run = ok(c.get("/api/training"))["runs"][0]
    assert run["label"] == "long" and run["diverged_at"] == n and run["final_val"] is None
    assert run["final_train"] == pytest.approx(sum(10.0 / s for s in range(n - 9, n)) / 9)
    curve = ok(c.get("/api/training/run", params={"id": run["id"]}))
    k = curve["averaged"]
    assert k == 3 and len(curve["train"]["step"]) == math.ceil(n / 3) <= training.MAX_POINTS
    assert curve["train"]["step"][:2] == [3, 6]
    assert curve["train"]["loss"][1] == pytest.approx((10 / 4 + 10 / 5 + 10 / 6) / 3)
    assert curve["val"]["loss"] == [None]


def test_runs_option_and_bad_folders(tmp_path, capsys, runs):
    assert build_parser().parse_args(["viz", "--runs", "a", "b"]).runs == ["a", "b"]
    assert build_parser().parse_args(["viz"]).runs is None
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="--runs .*nope.* is not a folder"):
        create_app(run_dirs=[missing])
    rc = main(["viz", "--port", "0", "--runs", str(runs), str(missing)])
    out, err = capsys.readouterr()
    assert rc == 1 and out == "" and len(err.strip().splitlines()) == 1 and "is not a folder" in err
    # a loss.json given directly stands for its folder; a folder without runs is a listed problem
    (tmp_path / "empty").mkdir()
    c = TestClient(create_app(benchmark_dirs=[], run_dirs=[runs / "tiny" / "loss.json", tmp_path / "empty"]))
    listing = ok(c.get("/api/training"))
    assert [r["label"] for r in listing["runs"]] == ["tiny"]
    assert "no loss.json" in listing["problems"][0]["reason"]
    assert listing["problems"][0]["where"] == str((tmp_path / "empty").resolve())


def test_sync_copies_training_files_and_refuses_broken_ones(tmp_path, recorded):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("training-gemma.json", "training-list.json", "kernels.json"):
        (src / name).write_text((recorded / name).read_text())
    copied = benchmarks.sync(src, tmp_path / "pkg")
    assert sorted(p.rsplit("/", 1)[1] for p in copied) == ["kernels.json", "training-gemma.json", "training-list.json"]
    (src / "training-broken.json").write_text((recorded / "training-broken.json").read_text())
    with pytest.raises(ValueError, match="training-broken.json: not a training record"):
        benchmarks.sync(src, tmp_path / "pkg2")


def test_the_project_recorded_runs_all_draw():
    """Every training-*.json shipped (docs/benchmarks, the package copy) gives drawable runs."""
    listing = ok(TestClient(create_app()).get("/api/training"))
    assert listing["problems"] == []
    assert all("problem" not in r and r["steps"] > 0 for r in listing["runs"]), listing["runs"]


def test_training_view_draws_the_curves(page, runs, recorded):  # noqa: F811 (fixture)
    url, server, thread = serve(create_app(benchmark_dirs=[recorded], run_dirs=[runs]))
    try:
        open_view(page, url + "/training")
        table = page.locator("#training-runs")
        expect(table.locator("tbody tr")).to_have_count(7)
        tiny = table.locator('tr[data-id="folder:0:tiny"]')
        expect(tiny).to_contain_text("recipe bf16, tiny model")
        expect(tiny.locator("input.pick")).to_be_checked()  # run folders are ticked first
        cut = table.locator('tr[data-id="folder:0:cut"]')
        expect(cut).to_contain_text("cannot be drawn")
        expect(cut.locator("input.pick")).to_be_disabled()
        expect(page.locator("#training-problems")).to_contain_text("training-broken.json")
        chart = page.locator("#training-chart svg.plot")
        expect(chart).to_have_count(1)
        # tiny and going: a training line and a dashed validation line each; dots for validation
        expect(chart.locator("path")).to_have_count(4)
        expect(chart.locator("circle.pt")).to_have_count(3)
        ds = chart.locator("path").evaluate_all("(ps) => ps.map((p) => p.getAttribute('d'))")
        # segments: going's 4 training steps and 1 evaluation, tiny's 6 steps and 2 evaluations
        assert sorted(d.count("L") for d in ds) == [0, 1, 3, 5] and all(d.startswith("M") for d in ds), ds
        expect(chart.locator("text.label").first).to_have_text("training step")
        page.select_option("#training-x", "tokens")
        expect(chart.locator("text.label").first).to_have_text("tokens seen")
        page.check("#training-log")
        expect(page.locator("#training-chart svg.plot text.label").nth(1)).to_have_text("loss (log scale)")
        table.locator('tr[data-id="folder:0:going"] input.pick').uncheck()
        expect(page.locator("#training-chart svg.plot circle.pt")).to_have_count(2)
        table.locator("tr", has_text="qat-floor").locator("input.pick").check()
        expect(page.locator("#training-chart svg.plot circle.pt")).to_have_count(5)
        expect(page.locator("#training-chart .legend").first).to_contain_text("qat-floor")
        shot(page, "training-1280x800")
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(200)
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        shot(page, "training-390x844")
        tiny.locator("input.pick").uncheck()
        table.locator("tr", has_text="qat-floor").locator("input.pick").uncheck()
        expect(page.locator("#training-chart")).to_contain_text("Tick one or more runs")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_training_view_without_runs(page, tmp_path):  # noqa: F811 (fixture)
    url, server, thread = serve(create_app(benchmark_dirs=[tmp_path]))
    try:
        open_view(page, url + "/training")
        expect(page.locator(".empty")).to_contain_text("No training runs to show")
        expect(page.locator(".empty")).to_contain_text("mxfp4 viz --runs")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
