"""The visualizer in a real browser: Playwright driving Debian's Chromium (scripts/setup-browser.sh).

The server runs in-process on 127.0.0.1 with a free port. Each test loads a view, interacts with it,
checks what the page shows and that the console stayed free of errors. Screenshots of every view
at 1280x800 and at phone width go to artifacts/viz/.
"""

import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
import uvicorn
from playwright.sync_api import expect, sync_playwright
from safetensors.torch import save_file

import mxfp4
from mxfp4.nn import quantize_model
from mxfp4.viz.app import VIEWS, create_app

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "viz"
WIDE, NARROW = (1280, 800), (390, 844)
SEED_CODES = ["0100", "1010", "0010", "0110"]
STORED_BLOCKS = None  # set by the urls fixture
CHECKPOINT = None  # the quantized model saved as models/ckpt, set by the urls fixture
CONFIG = "BN=128 BM=128 BK=64 SPLIT_K=1 GROUP_N=8 SWAP=True num_warps=8 num_stages=4"


def serve(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the visualizer server did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture(scope="module")
def urls(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(128, 256, generator=g)
    w[9, 100] = 25.0
    save_file({"layer.weight": w.bfloat16(), "layer.bias": torch.randn(128, generator=g),
               "step": torch.zeros(1, dtype=torch.int64)}, str(models / "small.safetensors"))
    global STORED_BLOCKS
    blocks, scales = mxfp4.quantize(torch.randn(4, 8, 64, generator=g)).to_gpt_oss()
    STORED_BLOCKS = blocks.clone()
    save_file({"experts.down_proj_blocks": blocks.contiguous(), "experts.down_proj_scales": scales.contiguous()},
              str(models / "stored.safetensors"))
    global CHECKPOINT
    from mx_tiny_models import tiny_gemma3
    CHECKPOINT = tiny_gemma3(layers=1)
    quantize_model(CHECKPOINT, scale_rule="ceil")
    mxfp4.save_quantized(CHECKPOINT, models / "ckpt")
    mxfp4.quantize(torch.randn(64, 1200, generator=g), axis=0).save(models / "tall.safetensors")  # 1,200 rows
    bench = tmp_path_factory.mktemp("bench")
    (bench / "kernels.json").write_text(json.dumps({  # the shape `mxfp4 bench kernels` writes
        "title": "W4A16 GEMM vs baselines", "environment": {"device": "TestGPU 80GB", "date": "2026-01-02",
                                                            "torch": "2.11", "triton": "3.6"},
        "columns": ["op", "shape", "M", "variant", "us", "cublas_us", "vs_cublas", "meets", "config"],
        "rows": [{"op": "quantize", "shape": "8192x8192", "M": "", "variant": "triton", "us": 60.0,
                  "cublas_us": "", "vs_cublas": "", "meets": True, "config": "elements=4096 num_warps=4 walk=0"}]
        + [{"op": "linear", "shape": s, "M": m, "variant": "hopper", "us": us, "cublas_us": cub,
            "vs_cublas": us / cub, "meets": us < cub, "config": CONFIG}
           for s, m, us, cub in [("4096->14336", 1, 11.0, 30.0), ("4096->14336", 64, 14.0, 31.0),
                                 ("2880->5760", 1, 5.0, 9.0), ("2880->5760", 64, 6.5, 9.5)]],
        "notes": "Synthetic numbers for the browser test."}))
    empty = tmp_path_factory.mktemp("empty")
    full = serve(create_app(models_dir=str(models), benchmark_dirs=[bench]))
    bare = serve(create_app(benchmark_dirs=[empty]))
    real = serve(create_app())  # the project's recorded benchmarks (docs/benchmarks)
    yield {"full": full[0], "bare": bare[0], "real": real[0]}
    for _, server, thread in (full, bare, real):
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: run scripts/setup-browser.sh (apt-get install chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": WIDE[0], "height": WIDE[1]})
    pg = context.new_page()
    pg.set_default_timeout(10000)
    errors = []
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    yield pg
    context.close()
    assert errors == [], errors


def open_view(page, url):
    page.goto(url)
    expect(page.locator("#view")).to_have_attribute("data-ready", "1")
    expect(page.locator("#error")).to_be_hidden()


def codes(page):
    return page.locator("#codes .chip").all_text_contents()


def shot(page, name):
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header belongs at the top of a full-page shot
    page.wait_for_timeout(150)  # let charts settle after the last resize
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_landing_page_is_the_seed_example(page, urls):
    open_view(page, urls["full"] + "/")
    expect(page.locator("#codes .chip")).to_have_count(4)
    assert codes(page) == SEED_CODES
    expect(page.locator("#scale-value")).to_have_text("1.0")
    expect(page.locator("#ratio-value")).to_have_text("2.67 : 1")
    expect(page.locator("#nav a.active")).to_have_text("Block quantizer")
    assert page.locator("#elements tbody tr").count() == 4
    shot(page, "block-1280x800")


def test_block_quantizer_inputs(page, urls):
    open_view(page, urls["full"] + "/block")
    x = page.locator("#inputs input")
    x.nth(3).fill("7")  # above 6 at scale 1: floor clips it
    expect(page.locator("#codes .chip").nth(3)).to_have_text("0111")
    expect(page.locator("#elements tr.clipped")).to_have_count(1)
    page.select_option("#rule", "ceil")  # ceil takes the next power of two and never clips
    expect(page.locator("#scale-value")).to_have_text("2.0")
    expect(page.locator("#elements tr.clipped")).to_have_count(0)
    x.nth(1).fill("abc")
    expect(page.locator("#input-msg")).to_contain_text("Not a number: x1")
    expect(x.nth(1)).to_have_class("invalid")
    x.nth(1).fill("-1.25")
    expect(page.locator("#input-msg")).to_have_text("")
    page.click("#random")
    expect(page.locator("#codes .chip")).to_have_count(32)
    page.click("#paste")
    page.fill("#paste-text", "1, 2 3\n-0.5")
    page.click("#paste-apply")
    expect(page.locator("#codes .chip")).to_have_count(4)
    page.click("#example")
    page.select_option("#rule", "floor")
    expect(page.locator("#scale-value")).to_have_text("1.0")
    assert codes(page) == SEED_CODES
    open_view(page, urls["full"] + "/block?values=0.5,-3&rule=even")
    expect(page.locator("#codes .chip")).to_have_count(2)
    expect(page.locator("#rule")).to_have_value("even")


def test_value_space(page, urls):
    open_view(page, urls["full"] + "/values")
    expect(page.locator("#value-table tbody tr")).to_have_count(16)
    expect(page.locator("#value-table tbody tr").nth(1)).to_contain_text("subnormal")
    expect(page.locator("#code-line svg g")).to_have_count(16)
    expect(page.locator("#step-chart svg path")).to_have_count(2)
    qsnr = page.locator("#dist-qsnr")
    page.select_option("#dist-rule", "mse")
    expect(page.locator("#dist-rule")).to_have_value("mse")
    page.wait_for_load_state("networkidle")
    expect(qsnr).to_contain_text("dB")
    at_32 = float(qsnr.inner_text().split()[0])
    page.select_option("#block-size", "256")
    expect(qsnr).not_to_have_text(f"{at_32:.2f} dB")
    assert float(qsnr.inner_text().split()[0]) < at_32  # bigger blocks, worse QSNR
    page.locator("#sigma").fill("1")  # log10 sigma
    expect(page.locator("label.slider output").first).to_have_text("10.0")
    shot(page, "values-1280x800")


def test_scale_rules(page, urls):
    open_view(page, urls["full"] + "/rules")
    rows = page.locator("#rules-table tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator('tr[data-rule="ceil"] td').nth(2)).to_have_text("0")
    expect(page.locator('tr[data-rule="floor"] td').nth(2)).not_to_have_text("0")
    page.select_option("#rules-data", "outliers")
    expect(page.locator("#rules-table")).to_contain_text("outliers")
    page.locator("#rules-sigma").fill("-1")
    expect(page.locator("#rules-table")).to_contain_text("outliers")
    expect(page.locator("#rules-qsnr svg rect.bar")).to_have_count(4)
    ticks = page.locator('#rules-qsnr svg text.tick[text-anchor="end"]').all_text_contents()
    assert ticks[0] == "0", ticks  # the QSNR axis starts at 0
    shot(page, "rules-1280x800")


def test_matmul_step_through(page, urls):
    open_view(page, urls["full"] + "/matmul")
    counter = page.locator("#step-counter")
    expect(counter).to_have_text("0 / 16")
    for _ in range(3):
        page.click("#step")
    expect(counter).to_have_text("3 / 16")
    expect(page.locator("#step-pair")).to_contain_text("C[0, 0], block 2")
    expect(page.locator("#acc")).to_contain_text("accumulator C[0, 0] =")
    expect(page.locator("#mat-a td.on")).to_have_count(9)  # 8 elements and their scale
    shot(page, "matmul-1280x800")
    page.locator("#speed").fill("10")
    page.click("#play")
    expect(page.locator("#final")).to_contain_text("same C as the steps: yes", timeout=15000)
    expect(counter).to_have_text("16 / 16")
    before = page.locator("#mat-a").inner_text()
    page.click("#reset")
    expect(counter).to_have_text("0 / 16")
    page.click("#randomize")
    expect(page.locator("#mat-a")).not_to_have_text(before)
    page.select_option("#mm-block", "16")
    expect(counter).to_have_text("0 / 8")


def test_moe_animation_and_memory(page, urls):
    open_view(page, urls["full"] + "/moe")
    stage = page.locator("#moe-stage")
    expect(stage).to_contain_text("4 tokens ready")
    page.click("#moe-step")
    page.click("#moe-step")
    expect(stage).to_contain_text("router logits")
    expect(page.locator("#moe-logits svg rect.bar")).to_have_count(8)
    page.locator("#moe-speed").fill("10")
    page.click("#moe-play")
    expect(stage).to_contain_text("done", timeout=20000)
    expect(page.locator("#moe-routing tbody tr")).to_have_count(4)
    page.click('button[data-preset="GPT-OSS-120B"]')
    expect(page.locator("#mem-fits")).to_have_text("Fits on one 80 GB GPU: BF16 no, MXFP4 yes")
    page.locator("#num-experts").fill("8")
    page.locator("#expert-size").fill("10")
    expect(page.locator("#mem-fits")).to_have_text("Fits on one 80 GB GPU: BF16 yes, MXFP4 yes")
    page.click('button[data-preset="GPT-OSS-20B"]')
    expect(page.locator("#mem-mxfp4")).to_have_text("13.8 GB")
    shot(page, "moe-1280x800")


def test_performance(page, urls):
    open_view(page, urls["full"] + "/perf")
    expect(page.locator("#memory-table tbody tr")).to_have_count(3)
    expect(page.locator("#model-memory-chart svg rect.bar")).to_have_count(6)  # 3 models, BF16 and MXFP4
    bench = page.locator('.bench[data-file="kernels.json"]')
    expect(bench).to_contain_text("W4A16 GEMM vs baselines")
    expect(bench).to_contain_text("TestGPU 80GB")
    expect(bench).to_contain_text("2026-01-02")
    expect(bench.locator("select.metric")).to_have_value("time_us")
    # bars grouped by operation, in words; cuBLAS once per operation, beside the kernel
    labels = bench.locator("svg text.glabel").all_text_contents()
    assert labels == ["quantize, 8192x8192", "linear, 4096 → 14336, M = 1", "linear, 4096 → 14336, M = 64",
                      "linear, 2880 → 5760, M = 1", "linear, 2880 → 5760, M = 64"], labels
    expect(bench.locator("svg rect.bar")).to_have_count(9)
    expect(bench.locator(".legend")).to_contain_text("cuBLAS")
    expect(bench.locator("svg text.label")).to_have_text("time (µs), lower is better")
    bench.locator("select.metric").select_option("vs_cublas")
    expect(bench.locator("svg rect.bar")).to_have_count(4)
    expect(bench.locator("svg text.label")).to_have_text("time ÷ cuBLAS time, lower is better")
    # the configuration is a tooltip and a detail row, not a column or a label
    heads = bench.locator("thead th").all_text_contents()
    assert "configuration" not in heads and "config" not in heads and "time (µs)" in heads, heads
    assert CONFIG in bench.locator("svg rect.bar").nth(1).locator("title").text_content()
    row = bench.locator("tbody tr:not(.detail)").nth(1)
    assert CONFIG in row.get_attribute("title")
    detail = bench.locator("tbody tr.detail").nth(1)
    expect(detail).to_be_hidden()
    row.locator("button.more").click()
    expect(detail).to_be_visible()
    expect(detail).to_contain_text(f"configuration: {CONFIG}")
    shot(page, "perf-1280x800")
    open_view(page, urls["bare"] + "/perf")
    expect(page.locator(".empty")).to_contain_text("No benchmark results recorded yet")
    expect(page.locator(".empty")).to_contain_text("mxfp4 bench")


# Every chart of the page, every choice of its selects: texts that overlap or leave their chart.
OVERLAPS = """() => {
  const problems = [];
  const check = (where) => {
    for (const svg of document.querySelectorAll("#view svg.plot")) {
      const box = svg.getBoundingClientRect();
      const texts = [...svg.querySelectorAll("text")].map((t) => [t.textContent, t.getBoundingClientRect()])
        .filter(([s, r]) => s.trim() && r.width > 0);
      texts.forEach(([s, r], i) => {
        if (r.left < box.left - 0.5 || r.right > box.right + 0.5) problems.push(`${where}: "${s}" leaves its chart`);
        for (const [t, q] of texts.slice(i + 1)) {
          if (r.left < q.right - 0.5 && q.left < r.right - 0.5 && r.top < q.bottom - 0.5 && q.top < r.bottom - 0.5)
            problems.push(`${where}: "${s}" overlaps "${t}"`);
        }
      });
    }
  };
  check("as loaded");
  for (const bench of document.querySelectorAll(".bench")) {
    for (let i = 0; bench.querySelectorAll("select")[i]; i++) {
      for (const value of [...bench.querySelectorAll("select")[i].options].map((o) => o.value)) {
        const sel = bench.querySelectorAll("select")[i];  // a redraw replaces the selects
        sel.value = value;
        sel.dispatchEvent(new Event("change"));
        check(`${bench.dataset.file} ${sel.className} ${value}`);
      }
    }
  }
  return problems;
}"""

# Every table: fits, or scrolls sideways (the last column reachable) with a visible hint; no cell cut.
CLIPPED = """() => {
  const problems = [];
  for (const wrap of document.querySelectorAll("#view .table-wrap")) {
    const table = wrap.querySelector("table"), name = table.id || wrap.closest("[data-file]")?.dataset.file || "a table";
    const w = wrap.getBoundingClientRect();
    if (w.right > window.innerWidth + 0.5) problems.push(`${name}: its box passes the window`);
    if (table.offsetWidth > wrap.clientWidth + 1) {
      if (!["auto", "scroll"].includes(getComputedStyle(wrap).overflowX)) problems.push(`${name}: clipped, no scrolling`);
      const hint = wrap.parentElement.querySelector(".scroll-hint");
      if (!hint || hint.hidden || !hint.offsetParent) problems.push(`${name}: scrolls without a visible hint`);
      wrap.scrollLeft = wrap.scrollWidth;
      const last = [...table.querySelectorAll("thead th")].at(-1).getBoundingClientRect();
      if (last.right > wrap.getBoundingClientRect().right + 1) problems.push(`${name}: the last column cannot be reached`);
      wrap.scrollLeft = 0;
    }
    for (const c of table.querySelectorAll("th, td")) {
      if (c.offsetParent && c.scrollWidth > c.clientWidth + 1) problems.push(`${name}: cell "${c.textContent.slice(0, 30)}" is cut`);
    }
  }
  return problems;
}"""


@pytest.mark.parametrize("size", [WIDE, NARROW], ids=["wide", "narrow"])
def test_performance_is_readable(page, urls, size):
    page.set_viewport_size({"width": size[0], "height": size[1]})
    for server in ("full", "real"):
        open_view(page, urls[server] + "/perf")
        page.wait_for_timeout(300)  # table hints follow a ResizeObserver
        assert page.evaluate(CLIPPED) == []
        assert page.evaluate(OVERLAPS) == []
    shot(page, f"perf-recorded-{size[0]}x{size[1]}")


def test_your_model(page, urls):
    open_view(page, urls["full"] + "/model")
    rows = page.locator("#tensor-table tbody tr")
    expect(rows).to_have_count(3)
    weight = page.locator('tr[data-name="layer.weight"]')
    expect(weight.locator("td.q").nth(0)).to_contain_text("dB")
    expect(page.locator('tr[data-name="step"]')).to_contain_text("other")
    weight.click()
    detail = page.locator("#tensor-detail")
    expect(detail.locator("canvas.heat")).to_have_count(1)
    expect(detail.locator("#worst-blocks tbody tr")).to_have_count(10)
    expect(detail.locator("#worst-blocks tbody tr").first).to_contain_text("9")  # the outlier's row
    page.select_option("#tensor-rule", "mse")
    expect(page.locator("#tensor-rule")).to_have_value("mse")
    expect(detail.locator("#tensor-qsnr")).to_contain_text("dB")
    shot(page, "model-1280x800")
    first = detail.locator("button.open-block").first
    row, block = first.get_attribute("data-row"), first.get_attribute("data-block")
    first.click()
    expect(page).to_have_url(re.compile(r"/block\?values="))
    expect(page.locator("#view")).to_have_attribute("data-ready", "1")
    expect(page.locator("#codes .chip")).to_have_count(32)
    expect(page.locator("#view")).to_contain_text(f"Block from layer.weight row {row} block {block}.")
    expect(page.locator("#rule")).to_have_value("mse")
    open_view(page, urls["full"] + "/model")
    page.select_option("#model-path", "stored.safetensors")
    stored = page.locator('tr[data-name="experts.down_proj_blocks"]')
    expect(stored).to_contain_text("mxfp4 (stored)")
    stored.click()
    expect(page.locator("#tensor-detail")).to_contain_text("stored MXFP4, logical [4, 8, 64]")
    page.fill("#pick-row", "31")
    page.fill("#pick-block", "1")
    page.click("#pick-open")
    expect(page.locator("#view")).to_contain_text("Block from experts.down_proj_blocks row 31 block 1.")
    expect(page.locator("#codes .chip")).to_have_count(32)
    # decoded and quantized again (floor), the stored block comes back code for code; JSON has no -0
    packed = STORED_BLOCKS[3, 7, 1]
    stored_codes = torch.stack((packed & 15, packed >> 4), -1).flatten().tolist()
    assert codes(page) == [format(0 if c == 8 else c, "04b") for c in stored_codes]
    open_view(page, urls["bare"] + "/model")
    expect(page.locator(".empty")).to_contain_text("--models DIR")


def test_your_model_decodes_checkpoints_and_mxtensor_files(page, urls):
    open_view(page, urls["full"] + "/model")
    expect(page.locator("#view")).to_contain_text("up to 262,144 values per tensor")
    page.select_option("#model-path", "ckpt")
    name = "model.layers.0.mlp.down_proj.weight_codes"
    row = page.locator(f'tr[data-name="{name}"]')
    expect(row).to_contain_text("mxfp4 (stored)")
    expect(row).to_contain_text("mxfp4 checkpoint, logical [64, 128]")
    expect(page.locator('tr[data-name="model.layers.0.mlp.down_proj.weight_scales"]')).to_contain_text("mxfp4 scales")
    row.click()
    detail = page.locator("#tensor-detail")
    expect(detail).to_contain_text("stored MXFP4, logical [64, 128]")
    expect(detail.locator("#stored-format")).to_have_text("mxfp4 checkpoint")
    expect(detail).to_contain_text("ceil")  # the scale rule the checkpoint records
    expect(detail.locator("#tensor-codes svg rect.bar")).to_have_count(16)
    shot(page, "model-checkpoint-1280x800")
    page.fill("#pick-row", "5")
    page.fill("#pick-block", "1")
    page.click("#pick-open")
    expect(page.locator("#view")).to_contain_text(f"Block from {name} row 5 block 1.")
    expect(page.locator("#rule")).to_have_value("ceil")
    shown = [float(v) for v in page.locator("#inputs input").evaluate_all("(xs) => xs.map((x) => x.value)")]
    assert shown == CHECKPOINT.model.layers[0].mlp.down_proj.weight_mx.dequantize()[5, 32:64].tolist()
    open_view(page, urls["full"] + "/model?path=tall.safetensors")
    page.locator('tr[data-name="codes"]').click()
    expect(page.locator("#tensor-detail")).to_contain_text("MXTensor file")
    expect(page.locator("#pick-row-range")).to_have_text("row (0–1,199)")  # limits as numbers


def test_navigation_bar_and_history(page, urls):
    open_view(page, urls["full"] + "/")
    for view in VIEWS[1:]:
        page.click(f'#nav a[data-view="{view}"]')
        expect(page.locator("#view")).to_have_attribute("data-view", view)
        expect(page.locator("#view")).to_have_attribute("data-ready", "1")
        assert page.url.endswith(f"/{view}")
    page.go_back()
    expect(page.locator("#view")).to_have_attribute("data-view", VIEWS[-2])
    expect(page.locator("#nav a.active")).to_have_attribute("data-view", VIEWS[-2])


@pytest.mark.parametrize("size", [WIDE, NARROW], ids=["wide", "narrow"])
def test_every_view_fits_and_is_screenshotted(page, urls, size):
    page.set_viewport_size({"width": size[0], "height": size[1]})
    for view in VIEWS:
        open_view(page, f"{urls['full']}/{view}")
        page.wait_for_timeout(250)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"/{view} is {overflow}px wider than a {size[0]}px window"
        shot(page, f"{view}-{size[0]}x{size[1]}-full")
