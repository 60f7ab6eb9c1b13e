"""`mxfp4 bench moe`: the GPT-OSS MoE layer (router to combined output) timed with CUDA graphs.

GPT-OSS-120B layer shapes (E = 128, k = 4, H = I = 2880), random normal expert weights quantized
with the `ceil` rule, a random router (experts roughly balanced). Each timed graph runs the
layer on R different inputs, so that small-T runs pick different experts and cannot live in
L2 (one token's 4 experts are 53 MB, about the L2 size). `--stack gpt-oss-120b` allocates all
36 MoE layers in MXFP4 and runs one token through them.

Baselines, timed in the same run on the same inputs: the layer in bf16 torch and, when the
package can be imported, on OpenAI triton_kernels. Every column, ours and theirs, is checked
against the fp32 reference first (`checked_time`); one that fails is reported with its error,
never timed. Both baselines route in fp32, as the reference does; they live in
`moe_baselines`.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from .moe_baselines import (REL_TOL, _said, baseline_note, baselines, checked_time, graph_time_us,
                            rel_err)
from .record import environment, write_results

TOKENS = (1, 16, 64, 256, 1024, 4096, 16384)
# The targets on the H100 (whole layer, median, us).
TARGET_US = {1: 30, 16: 250, 64: 520, 256: 600, 1024: 900, 4096: 2000, 16384: 6000}  # issue 24
HBM_BPS, BF16_FLOPS = 3.03e12, 723e12  # the H100 ceilings for the floor column
COLUMNS = ["T", "path", "config", "us", "floor_us", "floor_frac", "weight_GBps", "TFLOPs",
           "target_us", "rel_err"]


def columns(baselines, rows: list) -> list:
    """COLUMNS with each baseline's time and error after TFLOPs, and its `_error` column where
    some row has one; a baseline this run did not have gets no column at all."""
    extra = [f"{b}_{c}" for b in baselines for c in ("us", "rel_err")]
    errors = [f"{b}_error" for b in baselines if any(f"{b}_error" in r for r in rows)]
    i = COLUMNS.index("TFLOPs") + 1
    return COLUMNS[:i] + extra + COLUMNS[i:] + errors


def make_layer(E=128, H=2880, I=2880, k=4, device="cuda", seed=0, chunk=8):
    """MoE with normal weights (std 1/sqrt(fan_in)) quantized with ceil, expert chunk by chunk."""
    from ..nn.moe import MoE
    from ..ops import quantize
    from ..tensor import MXTensor

    g = torch.Generator(device=device).manual_seed(seed)

    def experts(rows, cols):
        parts = [quantize(torch.randn(min(chunk, E - e), rows, cols, generator=g, device=device)
                          .mul_(cols ** -0.5).bfloat16(), axis=-1, scale_rule="ceil")
                 for e in range(0, E, chunk)]
        return MXTensor(torch.cat([p.codes for p in parts]), torch.cat([p.scales for p in parts]),
                        (E, rows, cols), 2, 32, "ceil")

    w1, w2 = experts(2 * I, H), experts(H, I)
    rw = (torch.randn(E, H, generator=g, device=device) * H ** -0.5).bfloat16()
    small = lambda *s: (torch.randn(*s, generator=g, device=device) * 0.02).bfloat16()  # noqa: E731
    return MoE(rw, torch.zeros(E, dtype=torch.bfloat16, device=device), w1, small(E, 2 * I), w2,
               small(E, H), experts_per_token=k)


def patched(module, name: str, value, fn):
    """A call of fn with module.name set to value (restored after): the probes' way to time a
    module knob or a stand-in kernel inside one interleaved set of CUDA graphs."""
    def call():
        old = getattr(module, name)
        setattr(module, name, value)
        try:
            return fn()
        finally:
            setattr(module, name, old)
    return call


def compare_configs(layer, T: int, configs: list, reps: int = 16, min_us: float = 3000.0) -> list:
    """µs per call of `layer` at T tokens under each MoEConfig: each first checked against the
    reference path (relative error <= REL_TOL), then all timed interleaved (CUDA graphs over reps
    random inputs, replayed in turn; `bench.kernels.graph_times_us`)."""
    from .kernels import graph_times_us

    dev = layer.router_weight.device
    g = torch.Generator(device=dev).manual_seed(T)
    xs = [torch.randn(T, layer.hidden_size, generator=g, device=dev).bfloat16() for _ in range(reps)]
    ref = layer(xs[0], backend="reference").float()
    for cfg in configs:
        err = rel_err(layer(xs[0], backend="triton", config=cfg), ref)
        if not err <= REL_TOL:
            raise RuntimeError(f"T={T}, {cfg}: differs from the reference by {err:.3g}")
    return graph_times_us([[lambda x=x, c=cfg: layer(x, backend="triton", config=c) for x in xs]
                           for cfg in configs], min_us)


def layer_work(m, inputs):
    """Average (weight bytes read, FLOPs) per forward: distinct experts of each input's routing."""
    E, H, I, k = m.num_experts, m.hidden_size, m.intermediate_size, m.experts_per_token
    per_expert = (m.w1_codes[0].nbytes + m.w1_scales[0].nbytes + m.w2_codes[0].nbytes
                  + m.w2_scales[0].nbytes + (2 * I + H) * 2)
    distinct = statistics.mean(int(torch.unique(m.route(x)[0]).numel()) for x in inputs)
    T = inputs[0].shape[0]
    flops = 2 * T * (E * H + k * (2 * I * H + I * H))
    return distinct * per_expert + m.router_weight.nbytes, flops


def ceilings(device) -> dict:
    """Measured copy bandwidth (read + write) and bf16 matmul rate, for the notes."""
    from triton.testing import do_bench

    buf = torch.empty(2 << 30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(buf)
    copy_ms = do_bench(lambda: dst.copy_(buf), return_mode="median")
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    mm_ms = do_bench(lambda: a @ a, return_mode="median")
    del buf, dst, a
    torch.cuda.empty_cache()
    return {"copy_TBps": 2 * (2 << 30) / copy_ms / 1e9, "bf16_mm_TFLOPs": 2 * 8192 ** 3 / mm_ms / 1e9}


def candidates(T: int, k: int, E: int) -> list:
    """Tile configurations tried by --sweep at T tokens (the default one first)."""
    from ..kernels.moe import GemmConfig as G, MoEConfig, default_config

    out = [default_config(T, k, E)]
    per_expert = T * k / E
    if T * k <= 16:
        gs = [G(16, 64, 256, 4, 4), G(16, 64, 512, 4, 3), G(16, 128, 256, 4, 3), G(16, 64, 256, 4, 3, 8, 128)]
        out += [MoEConfig(True, g, g) for g in gs]
    elif per_expert <= 16:
        gs = [G(16, 64, 256, 4, 4), G(16, 64, 256, 4, 2), G(16, 64, 512, 4, 3), G(32, 64, 256, 4, 3),
              G(32, 64, 128, 4, 3), G(16, 64, 256, 4, 3, 8, 128)]
        out += [MoEConfig(False, g, g) for g in gs]
    elif per_expert <= 48:
        gs = [G(16, 64, 256, 4, 3), G(32, 64, 256, 4, 3), G(32, 64, 128, 4, 3),
              G(64, 64, 128, 4, 3), G(32, 64, 128, 4, 4, 8, 168),
              G(32, 64, 128, 4, 4), G(64, 64, 64, 4, 4)]
        out += [MoEConfig(False, g, g) for g in gs]
    else:
        gs = [G(128, 64, 64, 4, 4), G(128, 64, 64, 4, 2), G(64, 64, 64, 4, 3), G(128, 64, 128, 4, 2),
              G(256, 64, 64, 4, 3), G(128, 128, 64, 8, 3)]
        out += [MoEConfig(False, g, g) for g in gs]
        big = G(128, 64, 64, 4, 3)
        out += [MoEConfig(False, big, big, tail=t)
                for t in (G(16, 64, 256, 4, 3), G(32, 64, 128, 4, 3), G(64, 64, 64, 4, 3), None)]
    return list(dict.fromkeys(out))  # without repeats, in order


def bench_layer(args, m, lines: dict, on_row=None) -> tuple[list[dict], list[dict]]:
    """(rows, sweep entries) of layer m and the baselines `lines` (see `baselines`) at each of
    args.tokens; on_row(rows) after each T."""
    from ..kernels.moe import auto_config

    rows, sweep = [], []
    for T in args.tokens:
        reps = 16 if T <= 64 else (4 if T <= 1024 else 2)
        g = torch.Generator(device=args.device).manual_seed(T)
        inputs = [torch.randn(T, m.hidden_size, generator=g, device=args.device).bfloat16()
                  for _ in range(reps)]
        ref = m(inputs[0], backend="reference").float()
        nbytes, flops = layer_work(m, inputs)
        floor = max(nbytes / HBM_BPS, flops / BF16_FLOPS) * 1e6
        configs = candidates(T, m.experts_per_token, m.num_experts) if args.sweep else [
            auto_config(inputs[0], m.experts_per_token, m.num_experts, m._fused)]  # what moe_forward runs
        best = None
        for cfg in configs:
            entry = {"T": T, "config": _cfg_str(cfg), "decode": cfg.decode}
            entry.update(checked_time(lambda x, c=cfg: m(x, backend="triton", config=c), inputs, ref))
            sweep.append(entry)
            print(entry, flush=True)
            if "us" in entry and (best is None or entry["us"] < best[0]["us"]):
                best = (entry, cfg)
        if best is None:
            raise RuntimeError(f"T={T}: no configuration ran correctly: {sweep[-len(configs):]}")
        entry, cfg = best
        us = entry["us"]
        row = {"T": T, "path": "decode" if cfg.decode else "batch", "config": entry["config"],
               "us": us, "floor_us": floor, "floor_frac": floor / us,
               "weight_GBps": nbytes / us / 1e3, "TFLOPs": flops / us / 1e6,
               "target_us": TARGET_US.get(T, ""), "rel_err": entry["rel_err"]}
        for name, make in lines.items():
            try:
                got = checked_time(make(T), inputs, ref)
            except Exception as e:  # the baseline could not be set up
                got = {"error": _said(e)}
            row[f"{name}_us"], row[f"{name}_rel_err"] = got.get("us", ""), got.get("rel_err", "")
            if "error" in got:
                row[f"{name}_error"] = got["error"]
        rows.append(row)
        print(row, flush=True)
        if on_row is not None:
            on_row(rows)
        del inputs, ref
    return rows, sweep


def _cfg_str(cfg) -> str:
    g1, g2 = cfg.w1, cfg.w2
    def f(g):
        reg = f"r{g.maxnreg}" if g.maxnreg else ""
        return f"{g.bm}x{g.bn}x{g.bk}/w{g.warps}s{g.stages}{reg}"
    if cfg.decode and cfg.gemv:
        one = ", one launch" + (f" r{cfg.gemv_maxnreg}" if cfg.gemv_maxnreg else "")
        return (f"w1 gemv/w{cfg.gemv[0]}, w2 gemv/w{cfg.gemv[1]}"
                f"{one if cfg.one_launch else ''} (bf16 x)")
    tile = f", Gluon {cfg.ws} tile" if cfg.ws else ""
    return f"w1 {f(g1)}, w2 {f(g2)}" + (f", tails {f(cfg.tail)}" if cfg.tail else "") + tile


def bench_stack(args) -> dict:
    """All 36 MoE layers of GPT-OSS-120B in MXFP4 on one GPU; one token through all of them."""
    from ..nn.moe import MoE
    from ..tensor import MXTensor

    L, E, H, I, k = 36, 128, 2880, 2880, 4
    dev = args.device
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    g = torch.Generator(device=dev).manual_seed(1)

    def mx(rows, cols):  # random codes, scale bytes of weights with std ~1/sqrt(2880)
        codes = torch.randint(0, 256, (E, rows, cols // 2), dtype=torch.uint8, device=dev, generator=g)
        scales = torch.randint(119, 124, (E, rows, cols // 32), dtype=torch.uint8, device=dev, generator=g)
        return MXTensor(codes, scales, (E, rows, cols), 2, 32, "ceil")

    bias = lambda *s: (torch.randn(*s, device=dev, generator=g) * 0.02).bfloat16()  # noqa: E731
    layers = [MoE((torch.randn(E, H, device=dev, generator=g) * H ** -0.5).bfloat16(), bias(E),
                  mx(2 * I, H), bias(E, 2 * I), mx(H, I), bias(E, H), experts_per_token=k)
              for _ in range(L)]
    weights_gb = (torch.cuda.memory_allocated(dev) - base) / 1e9

    def token(x):  # the SwiGLU clamps keep values bounded through 36 layers without norms
        for layer in layers:
            x = layer(x, backend="triton")
        return x

    inputs = [torch.randn(1, H, device=dev, generator=g).bfloat16() for _ in range(4)]
    if not torch.isfinite(token(inputs[0])).all():
        raise RuntimeError("the 36-layer stack produced NaN or Inf")
    us = graph_time_us(token, inputs, replays=10)
    per_layer = (layers[0].w1_codes[0].nbytes + layers[0].w1_scales[0].nbytes
                 + layers[0].w2_codes[0].nbytes + layers[0].w2_scales[0].nbytes) * k
    result = {"layers": L, "weights_GB": weights_gb, "bf16_weights_GB": L * E * 3 * H * I * 2 / 1e9,
              "peak_GB": torch.cuda.max_memory_allocated(dev) / 1e9,
              "us_per_token": us, "us_per_layer": us / L,
              "expert_weight_GBps": L * per_layer / us / 1e3}
    del layers
    torch.cuda.empty_cache()
    return result


def run(args) -> int:
    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        raise RuntimeError("mxfp4 bench moe times CUDA graphs: it needs a CUDA device")
    env = environment(args.device)
    notes, rows, names = [], [], []

    def save(measured=None):  # after each part, so that a later failure keeps what was measured
        if measured is not None:
            rows[:] = measured
        if args.out:
            paths = write_results(args.out, "moe", "GPT-OSS MoE layer (E=128, k=4, H=I=2880), MXFP4 "
                                  "experts", env, columns(names, rows), rows, notes="\n\n".join(notes))
            print("wrote", *paths)

    if args.tokens:
        m = make_layer(device=args.device)
        lines, versions = baselines(m, args.bf16)
        env.update(versions)
        names[:] = lines
        notes.append(baseline_note(names, versions))
        _, sweep = bench_layer(args, m, lines, on_row=save)
        del m, lines
        torch.cuda.empty_cache()
        ceil = ceilings(args.device)
        if args.sweep and args.out:
            cols = ["T", "config", "decode", "us", "rel_err", "error"]
            write_results(args.out, "moe-sweep", "MoE tile sweep (mxfp4 bench moe --sweep)", env, cols,
                          sweep, notes="Every configuration tried; the fastest correct one per T "
                                       "goes to moe.md.")
        notes.append(f"Measured ceilings: copy {ceil['copy_TBps']:.2f} TB/s (read + write), bf16 "
                     f"matmul {ceil['bf16_mm_TFLOPs']:.0f} TFLOP/s. Floor column: max(expert + router "
                     f"weight bytes actually routed / 3.03 TB/s, FLOPs / 723 TFLOP/s), the issue's "
                     f"ceilings.")
        env["ceilings"] = ceil
        save()
    if args.stack:
        s = bench_stack(args)
        env["stack"] = s
        notes.append(f"Stack gpt-oss-120b: {s['layers']} MoE layers, expert+router weights "
                     f"{s['weights_GB']:.1f} GB in MXFP4 (bf16 would be {s['bf16_weights_GB']:.0f} GB), "
                     f"peak {s['peak_GB']:.1f} GB; one token through all layers "
                     f"{s['us_per_token']:.0f} us ({s['us_per_layer']:.1f} us per layer, "
                     f"{s['expert_weight_GBps']:.0f} GB/s of expert weights).")
        print(notes[-1])
        save()
    return 0


def add_arguments(p) -> None:
    p.add_argument("--device", default="cuda", help="a CUDA device")
    p.add_argument("--tokens", type=int, nargs="*", default=list(TOKENS),
                   help="token counts T to time (none: skip the single-layer table)")
    p.add_argument("--stack", choices=["gpt-oss-120b"], default=None,
                   help="also allocate the whole model's MoE layers and time one token")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the same layer in bf16 torch")
    p.add_argument("--sweep", action="store_true",
                   help="time several tile configurations per T and keep the fastest")
