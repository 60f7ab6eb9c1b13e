"""On an H100: check, then time, the warp-specialized MXFP4 x bf16 GEMM (mxfp4.kernels.ws_gemm,
Gluon, issue 24) against cuBLAS bf16 and mxfp4.linear (v1 Triton, plain and prepacked).

Run: PYTHONPATH=src python3 benchmarks/ws_gemm_device.py [--quick] [--no-sweep] [--shapes 0,2]
        [--ms 256,4096]
  --quick: the decode check, a short GEMM check, default configs only (~2 min);
  --no-sweep: every check, default configs only; --ms: the M values to time (16,64,256,4096).
  Writes $OUT/ws_gemm.json and $OUT/ws_gemm.log (the current folder without OUT). Exit code 1
  when a check fails.

Order: (1) decode: ws_dequantize (the GEMM's own decoder) bit-exact against
codec.dequantize_blocks on random bytes and every scale byte 0..254; (2) smoke: every config
family the run will use (defaults and sweep variants) runs once on a small ragged split-K
product in a child process, so a config that deadlocks costs SMOKE_S seconds, not the run;
(3) GEMM: rel. Frobenius error against float64 math on the dequantized weight <= 1e-2, fresh
inputs per case, output poisoned with NaN first; M in 1, 16, 17, 64, 100, 256, 300, 4096, the
four shapes and a ragged one (K = 2912, N = 2920: K not a multiple of BK = 64, N not of
BN = 128), with and without bias, split K included; (4) timing of the configs that passed (2)
and (3): CUDA-graph replays, interleaved per (shape, M), weights rotated over 600 MB
(mxfp4.bench.kernels.graph_times_us); the table names the winner per cell and lists every
variant's time.

Runs 1 and 2 (2026-12-07) and what they showed: docs/kernels.md, "First measurements".
Prediction for run 3, written before it: at M <= 64 a 128 x 64 weight step cost ~1,100 clk
against ~300 predicted. With two decoded W tiles (DECODED = 2) the decoder can store step
i + 1 only after the consumer has issued wgmma i and retired wgmma i - 1, so every step pays
the full decoder -> consumer -> decoder round trip (two mbarrier wake-ups, named barriers, the
stores and their proxy fence). With DECODED = 4 the decoder runs ahead and a step costs the
slower of the two chains: ~400-500 clk, 4096 -> 14336 at M = 16 from ~47 to ~20 us (d4). If d4
does not move it, the decoder's own chain is the limit (one warp an SMSP, nothing to hide its
latencies), and two decoder partitions on alternate steps (d4x2) should cut it ~1.6-2x.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

import mxfp4
from mxfp4 import codec
from mxfp4.bench.kernels import BF16_TFLOPS, COPY_TBS, floor_us, graph_times_us
from mxfp4.kernels import rs_gemm, ws_gemm
from mxfp4.layouts import prepack
from mxfp4.tensor import MXTensor

SHAPES = [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]  # (K, N)
RAGGED = (2912, 2920)
CHECK_MS = [1, 16, 17, 64, 100, 256, 300, 4096]
TIME_MS = [16, 64, 256, 4096]
ROTATE = 600e6
ONLY: set = set()  # --only: the sweep labels to time (beside the default)
KERNELS: set = {"ws", "rs"}  # --kernels: which Gluon GEMMs to check and time
STALL_S = 150  # no progress line for this long: a kernel hangs (say, a barrier deadlock)
LOG: list[str] = []
_LAST = [time.time()]


def say(line: str = "") -> None:
    print(line, flush=True)
    LOG.append(line)
    _LAST[0] = time.time()


def watchdog(out_dir: str) -> None:
    """End the process if nothing is logged for STALL_S seconds, keeping the log: a hung GPU
    kernel would otherwise hold the device until the command's time limit."""
    def run():
        while True:
            time.sleep(5)
            if time.time() - _LAST[0] > STALL_S:
                LOG.append(f"no progress for {STALL_S} s after the line above: a kernel hangs")
                print(LOG[-1], flush=True)
                _write(out_dir, dict(stalled=True, log=LOG))
                os._exit(3)
    threading.Thread(target=run, daemon=True).start()


def _write(out_dir: str, result: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "ws_gemm.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    with open(os.path.join(out_dir, "ws_gemm.log"), "w") as f:
        f.write("\n".join(LOG) + "\n")


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref).norm() / ref.norm()).item()


def weight(n: int, k: int, g) -> MXTensor:
    return mxfp4.quantize(torch.randn(n, k, generator=g, device="cuda") * 0.02)


def poison_next(nbytes: int) -> None:
    """Leave a NaN block of this size in the caching allocator, so the next torch.empty of it
    (the kernel's output) starts as NaN: an unwritten element then fails the check."""
    torch.full((nbytes // 2,), float("nan"), dtype=torch.bfloat16, device="cuda")


def check_decode(g) -> bool:
    ok = True
    for n, k in ((256, 2880), (300, 2912)):  # ragged N and K too
        codes = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, device="cuda", generator=g)
        scales = torch.randint(0, 255, (n, k // 32), dtype=torch.uint8, device="cuda",
                               generator=g)
        scales.view(-1)[:255] = torch.arange(255, dtype=torch.uint8, device="cuda")
        small = scales.clamp(max=128)  # the packed decoder's one-fma path needs bytes <= 128
        for form, w in (("plain", MXTensor(codes, scales, (n, k), 1)),
                        ("packed", prepack(MXTensor(codes, scales, (n, k), 1))),
                        ("packed fused", prepack(MXTensor(codes, small, (n, k), 1)))):
            poison_next(n * k * 2)
            got = ws_gemm.ws_dequantize(w)
            ref = codec.dequantize_blocks(codes, small if form == "packed fused" else scales,
                                          (n, k), 1, 32, torch.bfloat16)
            same = got.view(torch.int16) == ref.view(torch.int16)
            bad = (~same).sum().item()
            say(f"decode {form} {n}x{k}: {bad} of {n * k} bf16 values differ from the codec")
            if bad:
                i = (~same).nonzero()[:5].tolist()
                say(f"  first: {[(r, c, got[r, c].item(), ref[r, c].item()) for r, c in i]}")
            ok &= bad == 0
    return ok


def check_gemm(g, shapes, ms, failures: list, good: set) -> set:
    """Families (see family()) of default configs that failed a check against float64 math on
    the dequantized weight for some M >= MIN_M (M = 1 runs too, but only the dispatch's batches
    gate the timing); a config whose family failed the smoke test is not run. Every failing case
    is appended to failures."""
    bad = set()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for k, n in shapes:
        w = weight(n, k, g)
        packed = prepack(w)
        wd = w.dequantize(torch.float32, backend="reference").double()
        fails = len(failures)
        for m in ms:
            cfg = ws_gemm.ws_config(m, n, k, sms)
            for with_bias in (False, True):
                case = (f"gemm {k}->{n} M={m} bias={with_bias} split={cfg['SPLIT_K']} "
                        f"BM={cfg['BM']} BN={cfg['BN']} warps={cfg['num_warps']} "
                        f"loader={cfg['LOADER']}")
                if family(cfg) not in good:
                    good_case, line = False, f"{case}: not run (its config failed the smoke test)"
                else:
                    x = torch.randn(m, k, generator=g, device="cuda").to(torch.bfloat16)
                    bias = torch.randn(n, generator=g, device="cuda").to(torch.bfloat16) \
                        if with_bias else None
                    try:
                        ref = x.double() @ wd.T + (bias.double() if with_bias else 0)
                        err, good_case = 0.0, True
                        for form in (w, packed):  # the plain and the HopperWeight decoder
                            poison_next(m * n * 2)
                            y = ws_gemm.ws_linear(x, form, bias)
                            torch.cuda.synchronize()
                            err = max(err, rel_err(y, ref))
                            good_case &= err <= 1e-2 and not torch.isnan(y).any().item()
                        line = f"{case}: rel err {err:.2e}" + ("" if good_case else "  FAIL")
                    except Exception as e:  # report and go on: one failure should not hide others
                        good_case = False
                        line = f"{case}: FAILED {type(e).__name__}: {str(e)[:300]}"
                if not good_case or m in (1, 256, 4096) or with_bias:
                    say(line)
                if not good_case:
                    failures.append(line)
                    if m >= ws_gemm.MIN_M:
                        bad.add(family(cfg))
        say(f"gemm {k}->{n}: {'passed' if len(failures) == fails else 'FAILED'}")
    return bad


def check_rs(g, shapes, ms, failures: list) -> bool:
    """The register-operand GEMM (kernels/rs_gemm.py, HopperWeight only) against float64 math
    on the dequantized weight: every M, with and without bias, split K as rs_config picks it,
    and both decode forms (scale bytes <= 128: one fma a pair; larger: exact 2^(s-127))."""
    ok = True
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for k, n in shapes:
        w = weight(n, k, g)
        big = w._with(w.codes, w.scales.clone())
        big.scales.view(-1)[::7] = 140  # forces the unfused decode (bytes > 128)
        for form, wt in (("fused", w), ("exact", big)):
            packed = prepack(wt)
            wd = wt.dequantize(torch.float32, backend="reference").double()
            for m in ms:
                cfg = rs_gemm.rs_config(m, n, k, sms)
                with_bias = m % 2 == 1
                case = (f"rs {form} {k}->{n} M={m} bias={with_bias} split={cfg['SPLIT_K']} "
                        f"BM={cfg['BM']} BN={cfg['BN']} stages={cfg['STAGES']}")
                x = torch.randn(m, k, generator=g, device="cuda").to(torch.bfloat16)
                bias = torch.randn(n, generator=g, device="cuda").to(torch.bfloat16) \
                    if with_bias else None
                try:
                    poison_next(m * n * 2)
                    y = rs_gemm.rs_linear(x, packed, bias)
                    torch.cuda.synchronize()
                    ref = x.double() @ wd.T + (bias.double() if with_bias else 0)
                    err = rel_err(y, ref)
                    good = err <= 1e-2 and not torch.isnan(y).any().item()
                    line = f"{case}: rel err {err:.2e}" + ("" if good else "  FAIL")
                except Exception as e:
                    good, line = False, f"{case}: FAILED {type(e).__name__}: {str(e)[:300]}"
                say(line)
                if not good:
                    failures.append(line)
                ok &= good
    return ok


def rs_variants(m: int, n: int, k: int, sms: int, sweep: bool) -> list:
    """(label, config) pairs of the register-operand GEMM to time: rs_config's pick, then
    without the loader warp (rs_nl: 4 warps, up to 6 CTAs an SM at small M), one or two
    warpgroups (64 or 128 weight rows a CTA; _nl: no loader warp), four (256 x 128, no loader
    warp) for big batches, 64 x 256 tiles and a deeper ring."""
    base = rs_gemm.rs_config(m, n, k, sms)
    out = [("rs", base)]
    if sweep:
        big = base["BM"] >= 128
        for label, change in (("rs_nl", dict(LOADER=False) if base["num_warps"] == 4 else None),
                              ("rs_1wg", dict(num_warps=4, BN=64, maxnreg=232, LOADER=True)),
                              ("rs_2wg", dict(num_warps=8, BN=128, maxnreg=168, LOADER=True)),
                              # no loader warp: 8 warps at 128 registers, two CTAs an SM
                              ("rs_2wg_nl", dict(num_warps=8, BN=128, maxnreg=128,
                                                 LOADER=False)),
                              ("rs_4wg", dict(num_warps=16, BN=256, BM=128, maxnreg=128,
                                              LOADER=False, STAGES=4) if big else None),
                              ("rs_64x256", dict(num_warps=4, BN=64, BM=256, STAGES=3,
                                                 maxnreg=232, LOADER=True)),
                              ("rs_deep", dict(STAGES=min(12, base["STAGES"] * 2)))):
            if change is None:
                continue
            c = dict(base, **change)
            if rs_gemm.config_problem(c) is None and all(c != o for _, o in out):
                out.append((label, c))
    return [(label, c) for label, c in out if not ONLY or label in ONLY or label == "rs"]


def variants(m: int, n: int, k: int, sms: int, sweep: bool) -> list:
    """(label, config) pairs to time; the first is the default. Labels: dN = DECODED N (decoded
    W tiles in flight), x2 = two decoder partitions on alternate steps, dec8 = 8 decoder
    warps, 2wg = two consumer warpgroups, sN = STAGES N."""
    base = ws_gemm.ws_config(m, n, k, sms)
    out = [("default", base)]
    if not sweep:
        return out

    def v(label, **change):
        c = dict(base, **change)
        if ws_gemm.config_problem(c) is None and all(c != o for _, o in out):
            out.append((label, c))
    # (fused_2cta, LOADER=False at maxnreg 128, gave wrong results on the H100 on 2026-12-07;
    # ws_gemm.config_problem refuses it)
    if base["BM"] <= 64:  # decoder-bound: a deeper decoded ring, or two decoder partitions
        v("d4", DECODED=4, DECODERS=1, maxnreg=168)
        v("d4x2", DECODED=4, DECODERS=2, maxnreg=128)
    elif base["BM"] == 128:
        v("d4", DECODED=4)
        v("d4x2", DECODED=4, DECODERS=2, maxnreg=128)
        v("2wg_256", BM=256, STAGES=4, DECODED=2, num_warps=8, LOADER=False)
    else:  # 128 x 256, two consumer warpgroups
        v("group16", GROUP_M=16)
        # 256 weight rows x 128 tokens: 24 KB of x + codes a step instead of 36 KB for the
        # same MACs (L2 traffic was the limit of 128 x 256), twice the decode a step
        v("256x128", BN=256, BM=128, STAGES=4)
        v("256x128_dec8", BN=256, BM=128, STAGES=4, DECODE_WARPS=8, maxnreg=128)
    return [(label, c) for label, c in out if not ONLY or label in ONLY or label == "default"]


def family(cfg: dict) -> str:
    """A config without its split and tile order: what the smoke test compiles and runs."""
    return json.dumps({k: v for k, v in sorted(cfg.items()) if k not in ("SPLIT_K", "GROUP_M")})


SMOKE_S = 45  # one config's compile + small check in the child; longer means it hangs


def smoke_child() -> int:
    """--smoke-child: read configs (JSON lines) from stdin, run each on a small ragged product
    (two token tiles, three weight tiles, 13 K steps split in two), print start/ok/bad lines."""
    g = torch.Generator(device="cuda").manual_seed(7)
    for i, line in enumerate(sys.stdin):
        cfg = dict(json.loads(line), SPLIT_K=2, GROUP_M=8)
        print(f"start {i}", flush=True)
        m, n, k = min(cfg["BM"] + 5, 300), 2 * cfg["BN"] + 8, 64 * 12 + 32
        w = weight(n, k, g)
        x = torch.randn(m, k, generator=g, device="cuda").to(torch.bfloat16)
        try:
            errs = []
            for weight_form in (prepack(w),):  # the timed form (check_gemm runs both)
                poison_next(m * n * 2)
                y = ws_gemm.ws_linear(x, weight_form, None, cfg)
                torch.cuda.synchronize()
                errs.append(rel_err(y, x.double() @ w.dequantize(torch.float32).double().T))
                errs[-1] = errs[-1] if not torch.isnan(y).any().item() else float("nan")
            good = all(e <= 1e-2 for e in errs)
            print(f"{'ok' if good else 'bad'} {i} rel err {max(errs):.2e}", flush=True)
        except Exception as e:
            print(f"bad {i} {type(e).__name__}: {str(e)[:200]}", flush=True)
    return 0


def smoke(configs: list) -> set:
    """Families (see family()) that compiled, finished and matched float64 in a child process:
    a config whose barriers deadlock hangs the child, not this run. Returns the good ones."""
    todo = list(dict.fromkeys(family(c) for c in configs))
    good, hangs = set(), {}
    while todo:
        # two hangs with the same loader mode: the rest of that mode would hang too
        gone = [f for f in todo if hangs.get(json.loads(f)["LOADER"], 0) >= 2]
        for f in gone:
            say(f"smoke: skipped after two hangs of its loader mode {f}")
        todo = [f for f in todo if f not in gone]
        if not todo:
            break
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--smoke-child"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        child.stdin.write("".join(f + "\n" for f in todo))
        child.stdin.close()
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in child.stdout] + [lines.put(None)],
                         daemon=True).start()
        done = 0
        while True:
            try:
                line = lines.get(timeout=SMOKE_S)
            except queue.Empty:  # the config in flight hangs: drop it, go on with the rest
                say(f"smoke: HANG (no result in {SMOKE_S} s) {todo[done]}")
                mode = json.loads(todo[done])["LOADER"]
                hangs[mode] = hangs.get(mode, 0) + 1
                child.kill()
                done += 1
                break
            if line is None:
                done = len(todo)
                break
            parts = line.split(maxsplit=2)
            if len(parts) == 3 and parts[0] in ("ok", "bad"):
                word, i = parts[0], int(parts[1])
                say(f"smoke: {word} {parts[2].strip()} {todo[i]}")
                done = i + 1
                if word == "ok":
                    good.add(todo[i])
                else:  # a CUDA error can poison the process: the rest get a fresh one
                    child.kill()
                    break
        child.wait()
        todo = todo[done:]
        _LAST[0] = time.time()
    return good


def time_cell(k, n, m, w, plains, packs, dense, sms, sweep, ok, g) -> list:
    xs = [torch.randn(m, k, generator=g, device="cuda").to(torch.bfloat16)
          for _ in range(max(2, min(8, int(ROTATE // (m * k * 2)))))]
    lists = [("cublas", [lambda i=i: F.linear(xs[i % len(xs)], dense[i % len(dense)])
                         for i in range(len(dense))]),
             ("v1_plain", [lambda i=i: mxfp4.linear(xs[i % len(xs)], plains[i])
                           for i in range(len(plains))]),
             ("v1_prepacked", [lambda i=i: mxfp4.linear(xs[i % len(xs)], packs[i])
                               for i in range(len(packs))])]
    configs = []
    ref = xs[0].double() @ w.dequantize(torch.float32).double().T
    def passes(name, cfg, run) -> bool:
        """Compile and check this config on the first copy before timing it."""
        try:
            err = rel_err(run(), ref)
        except Exception as e:
            say(f"  {name} {cfg}: failed {type(e).__name__}: {str(e)[:200]}")
            return False
        if not err <= 1e-2:
            say(f"  {name} {cfg}: rel err {err:.2e}, not timed")
        return err <= 1e-2

    for label, cfg in (rs_variants(m, n, k, sms, sweep) if "rs" in KERNELS else []):
        if not passes(label, cfg, lambda c=cfg: rs_gemm.rs_linear(xs[0], packs[0], None, c)):
            continue
        configs.append((label, cfg))
        lists.append((label, [lambda i=i, c=cfg: rs_gemm.rs_linear(xs[i % len(xs)], packs[i],
                                                                     None, c)
                              for i in range(len(packs))]))
    for j, (label, cfg) in enumerate(variants(m, n, k, sms, sweep) if "ws" in KERNELS else []):
        if family(cfg) not in ok:
            say(f"  {label} {cfg}: not timed (failed the smoke test or a check)")
            continue
        # every config reads the HopperWeight (the cheaper decode); the default the plain too
        forms = [(label, packs)] + ([(f"{label}_plain", plains)] if j == 0 else [])
        for name, weights in forms:
            if not passes(name, cfg, lambda c=cfg, ws=weights: ws_gemm.ws_linear(
                    xs[0], ws[0], None, c)):
                continue
            configs.append((name, cfg))
            lists.append((f"ws_{name}", [lambda i=i, c=cfg, ws=weights: ws_gemm.ws_linear(
                xs[i % len(xs)], ws[i], None, c) for i in range(len(weights))]))
    times = graph_times_us([calls for _, calls in lists])
    fl = floor_us(n * k * 4.25 / 8 + m * k * 2 + m * n * 2, 2.0 * m * n * k)
    rows = []
    cub = times[0]
    for (name, _), us in zip(lists, times):
        cfg = dict(configs)[name[3:]] if name.startswith("ws_") else dict(configs).get(name)
        rows.append(dict(shape=f"{k}->{n}", M=m, variant=name, us=round(us, 2),
                         cublas_us=round(cub, 2), vs_cublas=round(us / cub, 3),
                         floor_us=round(fl, 2), config=cfg))
        say(f"  {k}->{n} M={m} {name}: {us:.1f} us ({us / cub:.2f}x cuBLAS, floor {fl:.1f})"
            + (f" {cfg}" if cfg else ""))
    return rows


def time_all(ok: set, shapes, ms, sweep: bool, g) -> list:
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for k, n in shapes:
        w = weight(n, k, g)
        wbytes = w.codes.nbytes + w.scales.nbytes
        copies = max(2, int(ROTATE // wbytes) + 1)
        plains = [w._with(w.codes.clone(), w.scales.clone()) for _ in range(copies)]
        packs = [prepack(p) for p in plains]
        wd = w.dequantize(torch.bfloat16)
        dense = [wd.clone() for _ in range(max(2, int(ROTATE // wd.nbytes) + 1))]
        for m in ms:
            rows += time_cell(k, n, m, w, plains, packs, dense, sms, sweep, ok, g)
        del plains, packs, dense
        torch.cuda.empty_cache()
    return rows


def table(rows: list) -> None:
    say("")
    say(f"{'shape':>12} {'M':>5} {'cuBLAS':>8} {'v1 plain':>9} {'v1 pack':>8} {'ws def':>8} "
        f"{'ws best':>8} {'best/cuBLAS':>11}  best config  |  rs variants")
    cells = {}
    for r in rows:
        cells.setdefault((r["shape"], r["M"]), {})[r["variant"]] = r
    for (shape, m), c in cells.items():
        ws = [r for v, r in c.items() if v.startswith("ws_")]
        best = min(ws, key=lambda r: r["us"]) if ws else None
        us = {v: f"{r['us']:.1f}" for v, r in c.items()}
        best_us = f"{best['us']:.1f}" if best else "-"
        ratio = f"{best['vs_cublas']:.2f}" if best else "-"
        base = c.get("ws_default", {}).get("config") or {}
        what = (f"{best['variant'][3:]} " + ", ".join(
            f"{k}={v}" for k, v in best["config"].items() if base.get(k) != v)) if best else ""
        say(f"{shape:>12} {m:>5} {us.get('cublas', '-'):>8} {us.get('v1_plain', '-'):>9} "
            f"{us.get('v1_prepacked', '-'):>8} {us.get('ws_default', '-'):>8} {best_us:>8} "
            f"{ratio:>11}  {what}  |  " + ", ".join(
                f"{v} {r['us']:.1f} ({r['vs_cublas']:.2f}x)" for v, r in c.items()
                if v.startswith("rs")))
        say(f"{'':>18} ws: " + ", ".join(f"{v[3:]} {r['us']:.1f}" for v, r in c.items()
                                         if v.startswith("ws_")))


def main() -> int:
    ap = argparse.ArgumentParser(description="warp-specialized MXFP4 GEMM on an H100")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--shapes", default="", help="indices into SHAPES, e.g. 0,2")
    ap.add_argument("--ms", default="", help="the M values to time, e.g. 256,4096 "
                    f"(default {','.join(map(str, TIME_MS))})")
    ap.add_argument("--only", default="", help="sweep labels to time beside the default, "
                    "e.g. d4,d4x2")
    ap.add_argument("--fast", action="store_true", help="no smoke products and GEMM checks: "
                    "the decode check, then each timed config checked once before timing")
    ap.add_argument("--kernels", default="ws,rs", help="the Gluon GEMMs to check and time: "
                    "ws (warp-specialized decoder), rs (register operand)")
    ap.add_argument("--smoke-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("ws_gemm_device.py needs a CUDA GPU")
    if a.smoke_child:
        return smoke_child()
    out_dir = os.environ.get("OUT", ".")
    import triton
    say(f"{torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}, "
        f"torch {torch.__version__}, triton {triton.__version__}, {time.strftime('%Y-%m-%d')}, "
        f"ceilings used for floors: {COPY_TBS} TB/s, {BF16_TFLOPS} TFLOPS")
    shapes = [SHAPES[int(i)] for i in a.shapes.split(",") if i] or SHAPES
    time_ms = [int(m) for m in a.ms.split(",") if m] or TIME_MS
    sweep = not (a.quick or a.no_sweep)
    check_shapes = (shapes[:1] if a.quick else shapes) + [RAGGED]
    check_ms = [1, 16, 100, 256, 4096] if a.quick else CHECK_MS
    ONLY.update(x for x in a.only.split(",") if x)
    KERNELS.intersection_update(a.kernels.split(","))
    g = torch.Generator(device="cuda").manual_seed(24)
    watchdog(out_dir)
    t0 = time.time()
    result = dict(decode_ok=None, smoke_ok=[], gemm_bad=[], failures=[], rows=[], log=LOG)
    try:
        result["decode_ok"] = check_decode(g) if "ws" in KERNELS else True
        if "rs" in KERNELS:
            # --fast: the ragged shape only (the timing checks each timed config again)
            result["rs_ok"] = check_rs(g, [RAGGED] if a.fast else check_shapes,
                                       [1, 17, 100, 300] if a.fast else check_ms,
                                       result["failures"])
            say(f"rs checks done in {time.time() - t0:.0f} s")
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        configs = [ws_gemm.ws_config(m, n, k, sms) for k, n in check_shapes for m in check_ms]
        configs += [c for k, n in shapes for m in time_ms for _, c in variants(m, n, k, sms, sweep)]
        if a.fast:  # the timing's own pre-check still compares each config with float64
            result["rows"] = time_all(set(map(family, configs)), shapes, time_ms, sweep, g)
            table(result["rows"])
            return 0 if result["decode_ok"] else 1
        good = smoke(configs)
        result["smoke_ok"] = sorted(good)
        for f in dict.fromkeys(family(c) for c in configs):
            if f not in good:
                result["failures"].append(f"smoke: {f}")
        say(f"smoke tests done in {time.time() - t0:.0f} s: {len(good)} of "
            f"{len(set(map(family, configs)))} config families passed")
        bad = check_gemm(g, check_shapes, check_ms, result["failures"], good)
        result["gemm_bad"] = sorted(bad)
        say(f"checks done in {time.time() - t0:.0f} s")
        result["rows"] = time_all(good - bad, shapes, time_ms, sweep, g)
        table(result["rows"])
    finally:
        _write(out_dir, result)
    say(f"total {time.time() - t0:.0f} s")
    ok = result["decode_ok"] and not result["failures"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
