"""On an H100: the bf16 decode GEMV (mxfp4.kernels.dense_gemv) against cuBLAS F.linear at the
GPT-OSS shapes, checked first, then a config sweep and timings at M = 1, 2, 8, 16.

Run: PYTHONPATH=src python3 benchmarks/dense_gemv_device.py [--quick] [--shapes qkv,out,unemb]
(--quick: default configs only, no sweep; --shapes: a subset). Writes the full log to
$OUT/dense_gemv.log when OUT is set.

Prediction (before measuring). Bytes per call are the weight plus small terms (x, bias, out):
  qkv   2880->5120   29.49 MB -> floor  9.83 us at 3.0 TB/s
  out   4096->2880   23.59 MB -> floor  7.86 us
  unemb 2880->201088 1158.3 MB -> floor 386.1 us
The weights and the x rows are read once; the MMA work at M <= 16 is far under the memory time
(unembedding at M = 16: 18.5 GFLOP, ~30 us on the tensor cores). cuBLAS (issue 22): qkv
12.4 us (2.38 TB/s), out 13.8 us (1.71), unembedding 385 us (3.0). Expected here: unembedding
at the copy rate (~390 us, either kernel); the two small weights lose ~1.5-2.5 us to starting
and draining one wave of programs (docs/kernels.md: a plain read of a 9 MB weight reached only
1.1-1.7 TB/s), so qkv ~11.5 us (2.6 TB/s) and out ~9.5 us (2.5 TB/s) at M = 1, with the early
weight read under PDL (EARLY_W) worth ~0.5-1 us of that in a graph of back-to-back calls;
M = 2..16 on the tensor-core path within ~10 % of M = 1.

Timing: one CUDA graph of 20 calls cycling through enough weight copies to exceed 120 MB
(L2 is 50 MB), replayed in turn with the other variants of the same shape and M (same clock
state); the median over replays of the time per call.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from mxfp4.kernels.dense_gemv import dense_config, dense_linear

SHAPES = [("qkv", 2880, 5120, True), ("out", 4096, 2880, True), ("unemb", 2880, 201088, False)]
MS = [1, 2, 8, 16]
SWEEP_MS = (1, 16)  # full sweeps here; M = 2 and 8 time the defaults and the M = 16 winner
CALLS, REPLAYS, ROTATE = 20, 25, 120e6
TBS = 3.0
LOG: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LOG.append(line)


def graph_us(variants: list) -> list:
    """Median µs per call for each variant (a list of 20 zero-argument calls), replayed in
    turn."""
    graphs = []
    s = _capture_stream()
    for calls in variants:
        for c in calls:  # compile and warm up outside capture
            c()
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s), torch.cuda.graph(g, stream=s):
            for c in calls:
                c()
        torch.cuda.current_stream().wait_stream(s)
        g.replay()
        torch.cuda.synchronize()
        graphs.append(g)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = [[] for _ in graphs]
    for _ in range(REPLAYS):
        for g, t in zip(graphs, times):
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            t.append(start.elapsed_time(end) * 1e3 / len(variants[0]))
    return [statistics.median(t) for t in times]


_STREAM: list = []


def _capture_stream():
    """One side stream for every capture: split-K arrival counters are kept per stream
    (kernels.linear.arrival_counters), and a stream past the arena's rows would get a
    captured memset in every call."""
    if not _STREAM:
        _STREAM.append(torch.cuda.Stream())
    return _STREAM[0]


def rel_err(y, ref) -> float:
    return ((y.double() - ref).norm() / ref.norm()).item()


def check(name, k, n, ws, b, xs, cfgs) -> None:
    """Every config against float64 math, beside F.linear's own error; twice, bit for bit."""
    w = ws[0]
    for m, x in xs.items():
        ref = x.double() @ w.double().T + (b.double() if b is not None else 0)
        r = torch.randn(m, n, device=x.device).bfloat16()
        ref_r = ref + r.double()
        e_cublas = rel_err(F.linear(x, w, b), ref)
        for cfg in [None] + cfgs.get(m, []):
            if cfg is not None and not cfg["DOT"] and m != 1:
                continue
            y = dense_linear(x, w, b, config=cfg, weight_ready=True)
            e = rel_err(y, ref)
            ok = torch.isfinite(y).all() and e <= 2 * e_cublas + 1e-3
            assert ok, f"{name} M={m} {cfg}: rel err {e:.2e} vs cuBLAS {e_cublas:.2e}"
            assert torch.equal(dense_linear(x, w, b, config=cfg, weight_ready=True), y)
            yr = dense_linear(x, w, b, r, config=cfg)
            er = rel_err(yr, ref_r)
            assert er <= 2 * rel_err(F.linear(x, w, b) + r, ref_r) + 1e-3, f"{name} res {er:.2e}"
        say(f"check {name} M={m}: ok over {1 + len(cfgs.get(m, []))} configs "
            f"(default rel err {rel_err(dense_linear(x, w, b), ref):.2e}, cuBLAS {e_cublas:.2e})")


def sweep_configs(m: int, n: int, k: int, sms: int) -> list:
    """The configs tried at this M: the default's split halved / doubled, tiles around it."""
    out = []
    steps_of = lambda bk: -(-k // bk)  # noqa: E731

    def splits(bn, bk, per_sm):
        s = max(1, min(steps_of(bk), round(per_sm * sms / -(-n // bn))))
        return sorted({max(1, s // 2), s, min(steps_of(bk), 2 * s)})

    if m == 1:  # the FMA path: rows x K step x warps, each with three splits, early W or not
        for bn, bk, warps in ((8, 256, 4), (16, 256, 4), (32, 256, 4), (16, 512, 4),
                              (16, 512, 8), (32, 512, 8)):
            for s in splits(bn, bk, 4):
                for early in (False, True):
                    out.append(dict(DOT=False, BN=bn, BK=bk, num_warps=warps, num_stages=1,
                                    SPLIT_K=s, EARLY_W=early))
        tiles = ((64, 128, 3),)  # the tensor-core path at M = 1, for comparison
    else:
        tiles = ((32, 128, 3), (32, 256, 3), (64, 64, 3), (64, 128, 3), (64, 128, 4),
                 (64, 256, 3), (128, 64, 3), (128, 128, 3))
    for bn, bk, stages in tiles:
        for s in splits(bn, bk, 3):
            out.append(dict(DOT=True, BN=bn, BK=bk, num_warps=8 if bn == 128 else 4,
                            num_stages=stages, SPLIT_K=s))
    return out


def fmt(cfg) -> str:
    return "dict(" + ", ".join(f"{k}={v}" for k, v in cfg.items()) + ")"


def main():
    quick = "--quick" in sys.argv
    only = sys.argv[sys.argv.index("--shapes") + 1].split(",") if "--shapes" in sys.argv else None
    t0 = time.time()
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    sms = props.multi_processor_count
    say(f"{props.name}, {sms} SMs, torch {torch.__version__}")
    g = torch.Generator(device=dev).manual_seed(0)
    rows = []
    for name, k, n, has_bias in SHAPES:
        if only and name not in only:
            continue
        nbytes = n * k * 2
        copies = max(2, int(ROTATE // nbytes) + 1)
        ws = [(torch.randn(n, k, generator=g, device=dev) / k ** 0.5).bfloat16()
              for _ in range(copies)]
        b = torch.randn(n, generator=g, device=dev).bfloat16() if has_bias else None
        xs = {m: torch.randn(m, k, generator=g, device=dev).bfloat16() for m in MS}
        cfgs = {} if quick else {m: sweep_configs(m, n, k, sms) for m in SWEEP_MS}
        check(name, k, n, ws, b, xs, cfgs)
        say(f"[{time.time() - t0:.0f} s] {name}: checked {sum(map(len, cfgs.values()))} configs")
        floor = nbytes / (TBS * 1e12) * 1e6
        best16 = None
        for m in MS:
            x = xs[m]
            tried = [None] + cfgs.get(m, []) + ([best16] if best16 and m in (2, 8) else [])
            tried = [c for c in tried if c is None or c["DOT"] or m == 1]
            variants = [[lambda w=w: F.linear(x, w, b) for w in ws * (CALLS // len(ws) + 1)][:CALLS]]
            for cfg in tried:
                variants.append([lambda w=w, c=cfg: dense_linear(x, w, b, config=c, weight_ready=True)
                                 for w in ws * (CALLS // len(ws) + 1)][:CALLS])
            us = graph_us(variants)
            cub, ours = us[0], us[1:]
            for cfg, t in zip(tried, ours):
                say(f"  {name} M={m} {t:8.2f} us {nbytes / t / 1e6:5.2f} TB/s  "
                    f"{'default ' + fmt(dense_config(m, n, k, sms)) if cfg is None else fmt(cfg)}")
            i = min(range(len(ours)), key=ours.__getitem__)
            best = tried[i] or dense_config(m, n, k, sms)
            if m == 16:
                best16 = best
            rows.append((name, m, floor, cub, ours[0], ours[i], best, (n, k)))
            say(f"{name} M={m}: cuBLAS {cub:.2f} us, default {ours[0]:.2f}, best {ours[i]:.2f} "
                f"({fmt(best)})")
        if name == "out":  # the fused residual add against F.linear + add
            x = xs[1]
            r = torch.randn(1, n, device=dev).bfloat16()
            reps = [ws[i % len(ws)] for i in range(CALLS)]
            t = graph_us([[lambda w=w: F.linear(x, w, b) + r for w in reps],
                          [lambda w=w: dense_linear(x, w, b, r, weight_ready=True) for w in reps]])
            say(f"out M=1 with residual: F.linear + add {t[0]:.2f} us, fused {t[1]:.2f} us")
        del ws
        torch.cuda.empty_cache()

    say("")
    say(f"{'shape':6} {'M':>3} {'floor':>7} {'cuBLAS us':>10} {'TB/s':>5} {'default':>8} "
        f"{'TB/s':>5} {'best':>8} {'TB/s':>5}")
    for name, m, floor, cub, dflt, best, _, (n, k) in rows:
        nb = n * k * 2 / 1e6
        say(f"{name:6} {m:3} {floor:7.2f} {cub:10.2f} {nb / cub:5.2f} {dflt:8.2f} {nb / dflt:5.2f} "
            f"{best:8.2f} {nb / best:5.2f}")
    say("")
    say("best configs, in dense_gemv.CONFIGS form ((N, K, M bucket); pick one per bucket):")
    for name, m, _, _, _, _, cfg, (n, k) in rows:
        say(f"    ({n}, {k}, {1 if m == 1 else (2 if m <= 8 else 16)}): {fmt(cfg)},  # {name} M={m}")
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "dense_gemv.log"), "w") as f:
            f.write("\n".join(LOG) + "\n")


if __name__ == "__main__":
    main()
