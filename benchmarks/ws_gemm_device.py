"""On an H100: check, then time, the warp-specialized MXFP4 x bf16 GEMM (mxfp4.kernels.ws_gemm,
Gluon, issue 24) against cuBLAS bf16 and mxfp4.linear (v1 Triton, plain and prepacked).

Run: PYTHONPATH=src python3 benchmarks/ws_gemm_device.py [--quick] [--no-sweep] [--shapes 0,2]
  --quick: the decode check, a short GEMM check, default configs only (~2 min);
  --no-sweep: every check, default configs only. Writes $OUT/ws_gemm.json and $OUT/ws_gemm.log
  (the current folder without OUT). Exit code 1 when a check fails.

Order: (1) decode: ws_dequantize (the GEMM's own decoder) bit-exact against
codec.dequantize_blocks on random bytes and every scale byte 0..254; (2) GEMM: rel. Frobenius
error against float64 math on the dequantized weight <= 1e-2, fresh inputs per case, output
poisoned with NaN first; M in 1, 16, 17, 64, 100, 256, 300, 4096, the four shapes and a ragged
one (K = 2912, N = 2920: K not a multiple of BK = 64, N not of BN = 128), with and without
bias, split K included; (3) timing, only for shapes whose checks passed: CUDA-graph replays,
interleaved per (shape, M), weights rotated over 600 MB (mxfp4.bench.kernels.graph_times_us).

Prediction, written before any run (H100 SXM ~1.75 GHz under load; an SM's wgmma ~3300 bf16
FLOP/clk in practice; copy 3.03 TB/s = ~13 B/clk/SM over 132 SMs; the decoder warpgroup
~190 instructions a thread per 128 x 64 weight step, ~300 clk with latencies):
  floor = max(bytes at 4.25 bits/weight + x + out over 3.03 TB/s, FLOPs over 723 TFLOPS)
  shape          M   floor   ws predicted              cuBLAS (issue 24)  v1 prepacked
  4096->14336   16   10.5    ~14 (64 steps x 300 clk, 112 CTAs)   -        -
  14336->4096   16   10.5    ~13.5 (split 4: 128 CTAs x 56 steps)
  2880->5760    16    3.0    ~8 (split 2, 90 CTAs x 23 steps + ~4 fill/reduce)
  2880->2880    16    1.5    ~6 (split 4, 92 CTAs x 12 steps)
  4096->14336   64   11.1    ~15 (~330 clk a step)                  -
  14336->4096   64   11.1    ~15
  2880->5760    64    3.3    ~8.5                                  15.0           18.1
  2880->2880    64    1.7    ~6.5                                   9.1           11.5
  4096->14336  256   41.6    ~49 (224 tiles = 1.7 waves x 64 steps x 635 clk)  49.3  88.0
  14336->4096  256   41.6    ~45 (split 2: 128 CTAs x 112 steps)    56.7           95.4
  2880->5760   256   11.7    ~19 (90 tiles on 132 SMs: misses)      17.5           34.5
  2880->2880   256    5.9    ~12 (split 2, 92 CTAs)                 12.6           36.3
  M = 4096, all   94-665     1.05-1.2x cuBLAS (64 x 256 tiles, one consumer warpgroup)
So the decode batches (M <= 64) should beat cuBLAS by 2-3x where weights dominate, and
M = 256 land near cuBLAS except 2880->5760, whose 90 tiles leave 42 SMs idle (stream-K or
a persistent grid is the fix). At M = 4096 one consumer warpgroup per SM (m64n256) is expected
short of cuBLAS's two; the next design there moves TMA issue into the decoder warpgroup so that
two consumer warpgroups (128 x 256 tiles) fit 12 warps under 168 registers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import torch
import torch.nn.functional as F

import mxfp4
from mxfp4 import codec
from mxfp4.bench.kernels import BF16_TFLOPS, COPY_TBS, floor_us, graph_times_us
from mxfp4.kernels import ws_gemm
from mxfp4.layouts import prepack
from mxfp4.tensor import MXTensor

SHAPES = [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]  # (K, N)
RAGGED = (2912, 2920)
CHECK_MS = [1, 16, 17, 64, 100, 256, 300, 4096]
TIME_MS = [16, 64, 256, 4096]
ROTATE = 600e6
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
        w = MXTensor(codes, scales, (n, k), 1)
        poison_next(n * k * 2)
        got = ws_gemm.ws_dequantize(w)
        ref = codec.dequantize_blocks(codes, scales, w.shape, 1, 32, torch.bfloat16)
        same = got.view(torch.int16) == ref.view(torch.int16)
        bad = (~same).sum().item()
        say(f"decode {n}x{k}: {bad} of {n * k} bf16 values differ from the codec")
        if bad:
            i = (~same).nonzero()[:5].tolist()
            say(f"  first: {[(r, c, got[r, c].item(), ref[r, c].item()) for r, c in i]}")
        ok &= bad == 0
    return ok


def check_gemm(g, shapes, ms, failures: list) -> dict:
    """{(k, n): whether every M >= MIN_M passed} for the GEMM against float64 math on the
    dequantized weight (M = 1 runs too, but only the dispatch's batches gate the timing);
    every failing case is appended to failures."""
    passed = {}
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for k, n in shapes:
        w = weight(n, k, g)
        wd = w.dequantize(torch.float32, backend="reference").double()
        ok = True
        for m in ms:
            cfg = ws_gemm.ws_config(m, n, k, sms)
            for with_bias in (False, True):
                case = (f"gemm {k}->{n} M={m} bias={with_bias} split={cfg['SPLIT_K']} "
                        f"BM={cfg['BM']} BN={cfg['BN']}")
                x = torch.randn(m, k, generator=g, device="cuda").to(torch.bfloat16)
                bias = torch.randn(n, generator=g, device="cuda").to(torch.bfloat16) \
                    if with_bias else None
                poison_next(m * n * 2)
                try:
                    y = ws_gemm.ws_linear(x, w, bias)
                    torch.cuda.synchronize()
                    ref = x.double() @ wd.T + (bias.double() if with_bias else 0)
                    err = rel_err(y, ref)
                    good = err <= 1e-2 and not torch.isnan(y).any().item()
                    line = f"{case}: rel err {err:.2e}" + ("" if good else "  FAIL")
                except Exception as e:  # report and go on: one failure should not hide others
                    good, line = False, f"{case}: FAILED {type(e).__name__}: {str(e)[:300]}"
                if not good or m in (1, 256) or with_bias:
                    say(line)
                if not good:
                    failures.append(line)
                    ok &= m < ws_gemm.MIN_M
        passed[(k, n)] = ok
        say(f"gemm {k}->{n}: {'passed' if ok else 'FAILED'} (M >= {ws_gemm.MIN_M})")
    return passed


def variants(m: int, n: int, k: int, sms: int, sweep: bool) -> list:
    """(label, config) pairs to time; the first is the default."""
    base = ws_gemm.ws_config(m, n, k, sms)
    out = [("default", base)]
    if not sweep:
        return out

    def v(label, **change):
        c = dict(base, **change)
        if c != base and all(c != o for _, o in out):
            out.append((label, c))
    if base["BM"] <= 64:  # two CTAs an SM: 12 warps x 80 registers, a shorter ring
        v("2cta", maxnreg=80, DECODE_REGS=80, STAGES=4)
        if base["BN"] == 128:  # two decoder warpgroups: 16 warps x 128 registers
            v("dec8", DECODE_WARPS=8, maxnreg=128, DECODE_REGS=96)
    if m <= 256:
        v("split*2", SPLIT_K=base["SPLIT_K"] * 2)
    if base["SPLIT_K"] > 1:
        v("split/2", SPLIT_K=base["SPLIT_K"] // 2)
    if m >= 256:
        v("64x256", BN=64, BM=256, STAGES=3)
        v("128x128", BN=128, BM=128, STAGES=4)
    if m == 256:
        v("bm64", BM=64, STAGES=6)
    if m > 256:
        v("group16", GROUP_M=16)
    return out[:5]


def time_cell(k, n, m, w, plains, packs, dense, sms, sweep, g) -> list:
    xs = [torch.randn(m, k, generator=g, device="cuda").to(torch.bfloat16)
          for _ in range(max(2, min(8, int(ROTATE // (m * k * 2)))))]
    lists = [("cublas", [lambda i=i: F.linear(xs[i % len(xs)], dense[i % len(dense)])
                         for i in range(len(dense))]),
             ("v1_plain", [lambda i=i: mxfp4.linear(xs[i % len(xs)], plains[i])
                           for i in range(len(plains))]),
             ("v1_prepacked", [lambda i=i: mxfp4.linear(xs[i % len(xs)], packs[i])
                               for i in range(len(packs))])]
    configs = []
    for label, cfg in variants(m, n, k, sms, sweep):
        try:  # compile and check this config on the first copy before timing it
            y = ws_gemm.ws_linear(xs[0], plains[0], None, cfg)
            err = rel_err(y, xs[0].double() @ w.dequantize(torch.float32).double().T)
            if not err <= 1e-2:
                say(f"  {label} {cfg}: rel err {err:.2e}, not timed")
                continue
        except Exception as e:
            say(f"  {label} {cfg}: failed {type(e).__name__}: {str(e)[:200]}")
            continue
        configs.append((label, cfg))
        lists.append((f"ws_{label}", [lambda i=i, c=cfg: ws_gemm.ws_linear(
            xs[i % len(xs)], plains[i], None, c) for i in range(len(plains))]))
    times = graph_times_us([calls for _, calls in lists])
    fl = floor_us(n * k * 4.25 / 8 + m * k * 2 + m * n * 2, 2.0 * m * n * k)
    rows = []
    cub = times[0]
    for (name, _), us in zip(lists, times):
        cfg = dict(configs)[name[3:]] if name.startswith("ws_") else None
        rows.append(dict(shape=f"{k}->{n}", M=m, variant=name, us=round(us, 2),
                         cublas_us=round(cub, 2), vs_cublas=round(us / cub, 3),
                         floor_us=round(fl, 2), config=cfg))
        say(f"  {k}->{n} M={m} {name}: {us:.1f} us ({us / cub:.2f}x cuBLAS, floor {fl:.1f})"
            + (f" {cfg}" if cfg else ""))
    return rows


def time_all(passed: dict, shapes, ms, sweep: bool, g) -> list:
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for k, n in shapes:
        if not passed.get((k, n)):
            say(f"timing {k}->{n}: skipped (its checks failed)")
            continue
        w = weight(n, k, g)
        wbytes = w.codes.nbytes + w.scales.nbytes
        copies = max(2, int(ROTATE // wbytes) + 1)
        plains = [w._with(w.codes.clone(), w.scales.clone()) for _ in range(copies)]
        packs = [prepack(p) for p in plains]
        wd = w.dequantize(torch.bfloat16)
        dense = [wd.clone() for _ in range(max(2, int(ROTATE // wd.nbytes) + 1))]
        for m in ms:
            rows += time_cell(k, n, m, w, plains, packs, dense, sms, sweep, g)
        del plains, packs, dense
        torch.cuda.empty_cache()
    return rows


def table(rows: list) -> None:
    say("")
    say(f"{'shape':>12} {'M':>5} {'cuBLAS':>8} {'v1 plain':>9} {'v1 pack':>8} {'ws def':>8} "
        f"{'ws best':>8} {'best/cuBLAS':>11}  best config")
    cells = {}
    for r in rows:
        cells.setdefault((r["shape"], r["M"]), {})[r["variant"]] = r
    for (shape, m), c in cells.items():
        ws = [r for v, r in c.items() if v.startswith("ws_")]
        best = min(ws, key=lambda r: r["us"]) if ws else None
        us = {v: f"{r['us']:.1f}" for v, r in c.items()}
        best_us = f"{best['us']:.1f}" if best else "-"
        ratio = f"{best['vs_cublas']:.2f}" if best else "-"
        what = f"{best['variant']} {best['config']}" if best else ""
        say(f"{shape:>12} {m:>5} {us.get('cublas', '-'):>8} {us.get('v1_plain', '-'):>9} "
            f"{us.get('v1_prepacked', '-'):>8} {us.get('ws_default', '-'):>8} {best_us:>8} "
            f"{ratio:>11}  {what}")


def main() -> int:
    ap = argparse.ArgumentParser(description="warp-specialized MXFP4 GEMM on an H100")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--shapes", default="", help="indices into SHAPES, e.g. 0,2")
    a = ap.parse_args()
    out_dir = os.environ.get("OUT", ".")
    if not torch.cuda.is_available():
        raise SystemExit("ws_gemm_device.py needs a CUDA GPU")
    import triton
    say(f"{torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}, "
        f"torch {torch.__version__}, triton {triton.__version__}, {time.strftime('%Y-%m-%d')}, "
        f"ceilings used for floors: {COPY_TBS} TB/s, {BF16_TFLOPS} TFLOPS")
    shapes = [SHAPES[int(i)] for i in a.shapes.split(",") if i] or SHAPES
    g = torch.Generator(device="cuda").manual_seed(24)
    watchdog(out_dir)
    t0 = time.time()
    result = dict(decode_ok=None, gemm={}, failures=[], rows=[], log=LOG)
    try:
        result["decode_ok"] = check_decode(g)
        ms = [1, 16, 100, 256] if a.quick else CHECK_MS
        passed = check_gemm(g, (shapes[:1] if a.quick else shapes) + [RAGGED], ms,
                            result["failures"])
        result["gemm"] = {f"{k}->{n}": ok for (k, n), ok in passed.items()}
        say(f"checks done in {time.time() - t0:.0f} s")
        if a.quick:
            passed = {s: passed.get(shapes[0], False) for s in shapes}
        result["rows"] = time_all(passed, shapes, TIME_MS, not (a.quick or a.no_sweep), g)
        table(result["rows"])
    finally:
        _write(out_dir, result)
    say(f"total {time.time() - t0:.0f} s")
    ok = result["decode_ok"] and not result["failures"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
