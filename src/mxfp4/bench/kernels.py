"""`mxfp4 bench kernels`: the Triton kernels on a GPU against cuBLAS bf16, with CUDA graphs.

Times quantize/dequantize of a bf16 8192x8192 tensor and mxfp4.linear for the issue's shapes,
each M, with weights rotated over more than 600 MB (so L2 holds none of them) and cuBLAS bf16
(F.linear on the dequantized weight) on the same inputs in the same run. Each row gives the
physical floor max(bytes / copy bandwidth, FLOPs / bf16 rate) at 4.25 bits per weight.
Correctness is checked on the same data before anything is timed.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from ..layouts import prepack
from ..ops import dequantize, linear, quantize
from .record import environment, write_results

COPY_TBS, BF16_TFLOPS = 3.03, 723.0  # measured H100 ceilings (issue 3)
ROTATE_BYTES = 600e6
SHAPES = [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]  # (K, N)
MS = [1, 16, 64, 256, 4096]
GEMV_TIMED_M = 16  # up to this M the bench times every decode kernel, not only the default
COLUMNS = ["op", "shape", "M", "variant", "us", "cublas_us", "floor_us", "floor_frac",
           "vs_cublas", "target_us", "meets", "config"]


def floor_us(nbytes: float, flops: float = 0.0) -> float:
    return max(nbytes / (COPY_TBS * 1e12), flops / (BF16_TFLOPS * 1e12)) * 1e6


def graph_time_us(calls: list, min_us: float = 3000.0, trials: int = 7) -> float:
    """Median time of one call, from CUDA-graph replays of the calls run in turn."""
    return graph_times_us([calls], min_us, trials)[0]


def graph_times_us(call_lists: list, min_us: float = 3000.0, trials: int = 7) -> list:
    """Median time of one call of each list, from CUDA-graph replays (one graph per list).

    The graphs are replayed in turn, trial after trial, so that every list sees the same
    clock and power state: compute-bound GEMMs slow down by up to 10 % as the GPU warms, which
    would otherwise favour whichever was timed first.
    """
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graphs = []
    for calls in call_lists:
        for c in calls:
            c()
        torch.cuda.synchronize()
        start.record()
        for c in calls:
            c()
        end.record()
        end.synchronize()
        est = max(start.elapsed_time(end) * 1e3 / len(calls), 1.0)
        reps = max(len(calls), int(min_us / est) // len(calls) * len(calls))
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            with torch.cuda.graph(graph, stream=stream):
                for i in range(reps):
                    calls[i % len(calls)]()
        torch.cuda.current_stream().wait_stream(stream)
        graph.replay()
        torch.cuda.synchronize()
        graphs.append((graph, reps))
    times = [[] for _ in graphs]
    for _ in range(trials):
        for (graph, reps), t in zip(graphs, times):
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            t.append(start.elapsed_time(end) * 1e3 / reps)
    del graphs
    return [statistics.median(t) for t in times]


def _copies(make, nbytes: int) -> list:
    return [make() for _ in range(max(2, int(ROTATE_BYTES // max(nbytes, 1)) + 1))]


def bench_codec(dev, rows: list, log, sweep: bool) -> None:
    from ..kernels import quantize as kq

    g = torch.Generator(device=dev).manual_seed(0)
    n = 8192
    xs = _copies(lambda: torch.randn(n, n, generator=g, device=dev).to(torch.bfloat16), n * n * 2)
    ref = quantize(xs[0][:512], backend="reference")  # torch on the GPU: the oracle
    got = quantize(xs[0][:512], backend="triton")
    assert torch.equal(got.codes, ref.codes) and torch.equal(got.scales, ref.scales), "quantize"
    qs = [quantize(x) for x in xs]
    assert torch.equal(dequantize(qs[0], torch.bfloat16),
                       dequantize(qs[0], torch.bfloat16, backend="reference")), "dequantize"
    nbytes = n * n * (2 + 0.5 + 1 / 32)
    tiles = [None] + ([(4096, 4), (4096, 8), (2048, 4), (2048, 8), (1024, 4)] if sweep else [])
    for op, target in (("quantize", 65.0), ("dequantize", 62.0)):
        best = None
        for tile in tiles:
            if op == "quantize":
                calls = [lambda x=x, t=tile: kq.quantize(x, 1, 32, "floor", "nearest", None, t)
                         for x in xs]
            else:
                calls = [lambda q=q, t=tile: kq.dequantize(q.codes, q.scales, q.shape, 1, 32,
                                                            torch.bfloat16, t) for q in qs]
            us = graph_time_us(calls)
            fl = floor_us(nbytes)
            t = tile or (kq.QUANTIZE_TILE if op == "quantize" else kq.DEQUANTIZE_TILE)
            row = dict(op=op, shape=f"{n}x{n} bf16", M="", variant="triton", us=us, cublas_us="",
                       floor_us=fl, floor_frac=fl / us, vs_cublas="", target_us=target,
                       meets=us <= target,
                       config=f"elements={t[0]} num_warps={t[1]}"
                       + (f" walk={t[3]}" if len(t) > 3 else ""))
            log(f"{op} {row['config']}: {us:.1f} us (floor {fl:.1f})")
            if tile is None:
                rows.append(row)
            if best is None or us < best["us"]:
                best = row
        if sweep:
            rows.append(dict(best, variant="triton-best"))


def bench_linear(dev, rows: list, log, ms, shapes, sweep: bool) -> None:
    from ..kernels import linear as kl

    g = torch.Generator(device=dev).manual_seed(1)
    for k, n in shapes:
        w = quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
        wbytes = w.codes.nbytes + w.scales.nbytes
        packs = _copies(lambda: prepack(w), wbytes)
        plains = [w._with(w.codes.clone(), w.scales.clone()) for _ in packs]
        wd = w.dequantize(torch.bfloat16)
        dense = _copies(lambda: wd.clone(), wd.nbytes)
        bias = torch.randn(n, generator=g, device=dev).to(torch.bfloat16)
        for m in ms:
            xs = _copies(lambda: torch.randn(m, k, generator=g, device=dev).to(torch.bfloat16),
                         m * k * 2 * 8)  # x is re-read per weight tile: a few copies suffice
            y = linear(xs[0], packs[0], bias)
            ref = (xs[0].double() @ wd.double().T + bias.double())
            err = ((y.double() - ref).norm() / ref.norm()).item()
            assert err < 1e-2, f"linear {k}->{n} M={m}: rel err {err}"
            # the second call takes the cached direct launch: same bits as the first
            assert torch.equal(linear(xs[0], packs[0], bias), y), "direct launch differs"
            fl = floor_us(n * k * 4.25 / 8 + m * k * 2 + m * n * 2, 2.0 * m * n * k)
            target = {1: {(4096, 14336): 13.0, (14336, 4096): 13.0, (2880, 5760): 6.0}.get((k, n))}.get(m)
            variants = _variants(m, n, packs[0].codes.shape[1] * 2, sweep)
            cfg = variants[0][1]
            timed = []  # (name, config, calls) of the variants that compile
            for name, c in variants:
                ws = packs if name.startswith("hopper") else plains
                try:
                    kl.linear(xs[0], ws[0], bias, c)
                except Exception as err:  # a sweep config the compiler rejects (e.g. smem)
                    log(f"  {name} {c}: failed: {type(err).__name__}: {str(err)[:120]}")
                    continue
                calls = [lambda i=i, ws=ws, c=c: kl.linear(xs[i % len(xs)], ws[i], bias, c)
                         for i in range(len(ws))]
                timed.append((name, c, calls))
            # cuBLAS and every variant in one interleaved timing (same clocks for all)
            cub, *times = graph_times_us([[lambda i=i: F.linear(xs[i % len(xs)], dense[i], bias)
                                           for i in range(len(dense))]] + [t[2] for t in timed])
            if m >= 4096:
                target = 1.15 * cub
            best = None
            for (name, c, _), us in zip(timed, times):
                row = dict(op="linear", shape=f"{k}->{n}", M=m, variant=name, us=us,
                           cublas_us=cub, floor_us=fl, floor_frac=fl / us, vs_cublas=us / cub,
                           target_us=target if target is not None else "",
                           meets=(us <= target) if target is not None else "",
                           config=_cfg_str(c) if c else _default_str(m, cfg, name))
                log(f"  {k}->{n} M={m} {name} {row['config']}: {us:.1f} us, cuBLAS {cub:.1f}, "
                    f"floor {fl:.1f}")
                if c is None or c is cfg or name in _DECODE_KERNELS or (
                        name == "hopper-fused" and c is variants[2][1]):
                    rows.append(row)
                if name.startswith("hopper") and (best is None or us < best["us"]):
                    best = row
            if sweep and best is not None:
                rows.append(dict(best, variant="hopper-best"))
            del xs
        del packs, plains, dense
        torch.cuda.empty_cache()


_DECODE_KERNELS = ("hopper-tiled", "hopper-gemv", "hopper-mma-gemv")  # rows beside the default


def _variants(m: int, n: int, kp: int, sweep: bool) -> list:
    """(weight layout, config) pairs timed for one case; None = the default for that layout."""
    from ..kernels import linear as kl

    from ..kernels.gemv import gemv_config
    from ..kernels.mma_gemv import mma_gemv_config

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    mma = kl.pick_config(m, n, kp, sms)
    gemv = gemv_config(m, n, kp, sms)
    # what mxfp4.linear dispatches to for bf16 x and real weights (scale bytes <= 128)
    cfg = kl.decode_config(m, n, kp, kp, torch.bfloat16, 128, sms) or mma
    if _prefill(m):  # decode W + cuBLAS (config None = the dispatch)
        out = [("hopper", None), ("mxtensor", None), ("hopper-fused", mma)]
        return out + ([("hopper-fused", c) for c in _sweep_configs(m, mma)] if sweep else [])
    out = [("hopper", cfg), ("mxtensor", None)]
    if m <= GEMV_TIMED_M:  # the other decode kernels
        others = [("hopper-tiled", mma), ("hopper-gemv", gemv)]
        if m <= 16:
            others.append(("hopper-mma-gemv", mma_gemv_config(m, n, kp, sms)))
        out += [(name, c) for name, c in others if c != cfg]
    if sweep:
        out += [("hopper", c) for c in _sweep_configs(m, mma)]
        if m <= GEMV_TIMED_M:
            out += [("hopper", c) for c in _gemv_sweep(gemv)]
    return out


def _gemv_sweep(cfg: dict) -> list:
    """GEMV tiles around the default: rows per program, split-K, warps."""
    out = []
    for bn, warps in ((16, 4), (32, 4), (64, 4), (64, 8), (128, 8)):
        if bn * cfg["BM"] > 128:
            continue
        for split in (1, 2, 4, 8):
            for lanes_k in (True, False):
                c = dict(cfg, BN=bn, SPLIT_K=split, LANES_K=lanes_k, num_warps=warps)
                if c != cfg:
                    out.append(c)
    for bk in (64, 128, 256):
        for split in (2, 4, 8, 16):
            c = dict(cfg, BK=bk, SPLIT_K=split)
            if bk != cfg["BK"] and c not in out:
                out.append(c)
    return out


def _compile_worker(tasks: list) -> int:
    """Run each (k, n, m, layout, config) once so that Triton compiles it into its disk cache."""
    from ..kernels import linear as kl

    done = 0
    for k, n, m, layout, cfg in tasks:
        w = quantize(torch.randn(n, k, device="cuda"))
        x = torch.randn(m, k, device="cuda").to(torch.bfloat16)
        bias = torch.randn(n, device="cuda").to(torch.bfloat16)
        try:
            kl.linear(x, prepack(w) if layout.startswith("hopper") else w, bias, cfg)
            done += 1
        except Exception:  # reported when the main process times it
            pass
    torch.cuda.synchronize()
    return done


def precompile(shapes, ms, sweep: bool, jobs: int, log) -> None:
    """Compile every linear variant in `jobs` processes first (Triton's disk cache is shared)."""
    import multiprocessing as mp

    tasks = []
    for k, n in shapes:
        kp = -(-k // 64) * 64
        for m in ms:
            tasks += [(k, n, m, layout, cfg) for layout, cfg in _variants(m, n, kp, sweep)]
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(jobs) as pool:
        done = sum(pool.map(_compile_worker, [tasks[i::jobs] for i in range(jobs)]))
    log(f"compiled {done}/{len(tasks)} linear variants in {time.perf_counter() - t:.0f} s "
        f"with {jobs} processes")


def _sweep_configs(m: int, cfg: dict) -> list:
    out = [dict(cfg, SPLIT_K=max(1, cfg["SPLIT_K"] // 2)), dict(cfg, SPLIT_K=cfg["SPLIT_K"] * 2)]
    if m <= 64:
        out.append(dict(cfg, BN=64, num_warps=4))
        out.append(dict(cfg, BK=128))
        out.append(dict(cfg, num_stages=3))
    else:
        out.append(dict(cfg, BK=128, num_stages=3))
        out.append(dict(cfg, BM=64, num_warps=4))
        out.append(dict(cfg, BN=64, num_warps=4))
    return [c for c in out if c != cfg]


def _cfg_str(c: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in c.items())


def _prefill(m: int) -> bool:
    """Whether mxfp4.linear takes the decode-then-cuBLAS path for m rows of bf16 x."""
    from ..kernels.prefill import use_prefill

    return use_prefill(m, torch.bfloat16)


def _default_str(m: int, cfg, name: str = "hopper") -> str:
    if _prefill(m):
        return "prefill: one decode kernel to bf16 W, then cuBLAS"
    if name == "mxtensor":
        return "plain layout: the tiled kernel (linear.pick_config)"
    return _cfg_str(cfg) if cfg else ""


def host_overhead_us(dev, log) -> float:
    """Python time of one mxfp4.linear call (launch included), on a shape the GPU runs faster."""
    w = prepack(quantize(torch.randn(2880, 2880, device=dev)))
    x = torch.randn(1, 2880, device=dev).to(torch.bfloat16)
    for _ in range(20):
        linear(x, w)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(2000):
            linear(x, w)
        best = min(best, (time.perf_counter() - t) / 2000 * 1e6)
        torch.cuda.synchronize()
    log(f"host time per mxfp4.linear call: {best:.1f} us")
    return best


def run(args) -> int:
    dev = args.device
    if not torch.cuda.is_available():
        print("mxfp4 bench kernels needs a CUDA GPU")
        return 2
    lines = []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)

    rows: list = []
    # host time first, in a quiet process: after the timed parts the 14 compile workers and
    # the allocator's many large blocks made the same call measure 20-35 us on one machine
    host = host_overhead_us(dev, log)
    if "codec" in args.parts:
        bench_codec(dev, rows, log, args.sweep)
    if "linear" in args.parts:
        shapes = [s for s in SHAPES if f"{s[0]}->{s[1]}" in args.shapes]
        if args.jobs > 1:
            try:
                precompile(shapes, args.m, args.sweep, args.jobs, log)
            except Exception as err:  # compiling in this process instead is only slower
                log(f"parallel compile failed ({type(err).__name__}: {err}); compiling serially")
        bench_linear(dev, rows, log, args.m, shapes, args.sweep)
    env = environment(dev)
    flags = (" --sweep" if args.sweep else "") + f" --jobs {args.jobs}"
    notes = (f"Command: `mxfp4 bench kernels{flags}`. Median of 7 CUDA-graph replays, each call on its "
             f"own weights (rotated over > 600 MB) and, for cuBLAS, F.linear on the dequantized "
             f"bf16 weight; for each shape and M, cuBLAS and every variant are replayed in turn, "
             f"trial after trial, so all see the same clocks. floor = max(bytes / {COPY_TBS} TB/s, FLOPs / {BF16_TFLOPS} TFLOP/s), "
             f"4.25 bits per weight. Host time per mxfp4.linear call: {host:.1f} us. Variants: "
             f"hopper = HopperWeight (prepacked) with the default tiles, mxtensor = plain "
             f"MXTensor, hopper-best = fastest of the swept tile configs (column config).")
    if args.out:
        paths = write_results(args.out, "kernels", "Triton MXFP4 kernels vs cuBLAS bf16", env,
                              COLUMNS, rows, notes=notes)
        log("wrote " + " ".join(paths))
    _print_table(rows)
    return 0


def _print_table(rows: list) -> None:
    print(f"{'op':10} {'shape':14} {'M':>5} {'variant':12} {'us':>8} {'cuBLAS':>8} {'floor':>7} "
          f"{'frac':>5} {'target':>7} ok")
    for r in rows:
        print(f"{r['op']:10} {r['shape']:14} {str(r['M']):>5} {r['variant']:12} {r['us']:8.1f} "
              f"{_f(r['cublas_us']):>8} {r['floor_us']:7.1f} {r['floor_frac']:5.2f} "
              f"{_f(r['target_us']):>7} {r['meets']}")


def _f(v) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def add_arguments(p) -> None:
    p.add_argument("--device", default="cuda", help="a CUDA device")
    p.add_argument("--parts", nargs="+", default=["codec", "linear"], choices=["codec", "linear"],
                   help="what to time: quantize/dequantize, linear")
    p.add_argument("--m", nargs="+", type=int, default=MS, help="token counts M to time")
    p.add_argument("--shapes", nargs="+", default=[f"{k}->{n}" for k, n in SHAPES],
                   help="K->N shapes of linear to time")
    p.add_argument("--sweep", action="store_true", help="also time alternative tile configs")
    p.add_argument("--jobs", type=int, default=8, help="processes that compile the kernels first")
