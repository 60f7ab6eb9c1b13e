"""One-off probe: why the Gluon MoE tiles are 3x slower than the Triton kernels (kernel times
per config variant, torch profiler; compiled resources). PYTHONPATH=src python3 <this> [T,..]"""
import dataclasses, statistics, sys
import torch
from torch.profiler import profile, ProfilerActivity
from mxfp4.bench.moe import make_layer
from mxfp4.kernels import moe as kmoe, ws_moe, rs_gemm
from mxfp4.kernels.moe import default_config

layer = make_layer()
orig_ws, orig_rs = ws_moe.tile_config, ws_moe.rs_tile_config


def kernel_times(cfg, x, reps=5):
    for _ in range(2):
        layer(x, backend="triton", config=cfg)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            layer(x, backend="triton", config=cfg)
        torch.cuda.synchronize()
    by = {}
    for e in prof.events():
        if e.device_type.name == "CUDA" and ("w1" in e.name or "w2" in e.name):
            by.setdefault(e.name[:22], []).append(e.device_time)
    return {k: round(statistics.median(v), 1) for k, v in by.items()}


def resources(kern):
    out = []
    try:
        for cache in kern.device_caches.values():
            for c in cache[0].values():
                out.append(f"regs={c.n_regs} spills={c.n_spills} smem={c.metadata.shared} "
                           f"warps={c.metadata.num_warps}")
    except Exception as e:
        out.append(f"? {e}")
    return out


for t in [int(a) for a in (sys.argv[1] if len(sys.argv) > 1 else "64").split(",")]:
    x = torch.randn(t, layer.hidden_size, device="cuda").bfloat16()
    base = default_config(t, layer.experts_per_token, layer.num_experts)
    print(f"T={t} bm={base.w1.bm}", flush=True)
    print("  v1", kernel_times(base, x), flush=True)
    variants = [("ws", "default", {}), ("ws", "G1", dict(GROUP_M=1)), ("ws", "S4", dict(STAGES=4)),
                ("ws", "S2", dict(STAGES=2)),
                ("rs", "default", {}), ("rs", "G1", dict(GROUP_M=1)), ("rs", "S3", dict(STAGES=3)),
                ("rs", "r168", dict(maxnreg=168))]
    for tile, label, change in variants:
        ws_moe.tile_config = lambda bm, c=change: {**orig_ws(bm), **c}
        ws_moe.rs_tile_config = lambda bm, c=change: {**orig_rs(bm), **c}
        try:
            print(f"  {tile} {label} {change}: {kernel_times(dataclasses.replace(base, ws=tile), x)}",
                  flush=True)
        except Exception as e:
            print(f"  {tile} {label}: FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
    ws_moe.tile_config, ws_moe.rs_tile_config = orig_ws, orig_rs
from mxfp4.kernels.ws_moe_kernel import ws_moe_w1_kernel, ws_moe_w2_kernel
print("w1 compiled:", *resources(ws_moe_w1_kernel), sep="\n  ")
print("w2 compiled:", *resources(ws_moe_w2_kernel), sep="\n  ")

# The same tiles streaming one big dense weight (ten experts' W1 stacked: 57,600 x 2880, eleven times,
# 83 MB each, 912 MB in all) at M = 16: is the tile slow on long streams, or only in the MoE's grid?
from mxfp4 import ops, layouts
from mxfp4.bench.kernels import graph_times_us
from mxfp4.kernels import ws_gemm
k = 2880
g = torch.Generator(device="cuda").manual_seed(1)
parts = [ops.quantize(torch.randn(5760 * 10, k, generator=g, device="cuda").bfloat16(), axis=-1)
         for _ in range(11)]
hw = [layouts.prepack(p) for p in parts]  # eleven 63,360-row weights, 83 MB each
x = torch.randn(16, k, device="cuda").bfloat16()
calls = {}
for label, cfgs in (("v1", None), ("rs", rs_gemm.rs_config(16, 5760 * 10, k)),
                    ("rs_s1", dict(rs_gemm.rs_config(16, 5760 * 10, k), SPLIT_K=1))):
    if label == "v1":
        calls[label] = [lambda h=h: ops.linear(x, h, backend="triton") for h in hw]
    else:
        calls[label] = [lambda h=h, c=cfgs: rs_gemm.rs_linear(x, h, config=c) for h in hw]
times = graph_times_us(list(calls.values()), 3000.0)
for (label, _), us in zip(calls.items(), times):
    print(f"stream 57600x2880 M=16 {label}: {us:.1f} us = {57600 * 1440 / us / 1e6:.2f} TB/s "
          f"of codes")
