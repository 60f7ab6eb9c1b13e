"""One-off probe: why the whole model's eager prefill is slower with the Gluon MoE table on
(139 vs 79 ms, gpt-oss-120b, 1 x 256 tokens) while its CUDA-graph decode is faster. Eager
host and wall time of one MoE layer on / off, a cProfile of the eager layer (tottime), and the
model's prefill and batch-256 decode with the table on, off, and applied only under CUDA-graph
capture. PYTHONPATH=src python3 benchmarks/probe_moe_host.py"""
import cProfile
import pstats
import time

import torch

from mxfp4.bench import model as bm
from mxfp4.bench.moe import make_layer
from mxfp4.kernels import moe

TABLE = moe.GLUON_MOE
with_tile = moe._with_gluon_tile


def graph_only(cfg, x, tokens, fused):
    return with_tile(cfg, x, tokens, fused) if torch.cuda.is_current_stream_capturing() else cfg


m = make_layer()
x = torch.randn(256, 2880, device="cuda").bfloat16()
for on in (True, False):
    moe.GLUON_MOE = TABLE if on else ()
    for _ in range(3):
        m(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        m(x)
    host = (time.perf_counter() - t0) / 20 * 1e6
    torch.cuda.synchronize()
    print(f"T=256 table {on}: eager host {host:.0f} us, wall "
          f"{(time.perf_counter() - t0) / 20 * 1e6:.0f} us", flush=True)
moe.GLUON_MOE = TABLE
pr = cProfile.Profile()
pr.enable()
for _ in range(20):
    m(x)
pr.disable()
torch.cuda.synchronize()
pstats.Stats(pr).sort_stats("tottime").print_stats(14)
del m, x
torch.cuda.empty_cache()

model = bm.GptOss.from_config(bm.SHAPES["gpt-oss-120b"](), device="cuda", dtype=torch.bfloat16,
                              seed=0, quantize_attention=False)
timer = bm.Timer("cuda")
for label, table, rule in (("on", TABLE, with_tile), ("off", (), with_tile),
                           ("graph only", TABLE, graph_only)):
    moe.GLUON_MOE, moe._with_gluon_tile = table, rule
    pre = bm.time_prefill(model, 1, 256, timer)
    dec, _ = bm.time_decode(model, 256, 1024, 8, timer)
    print(f"table {label}: prefill 1 x 256 {pre:.1f} ms, decode 256 {dec:.2f} ms", flush=True)
moe.GLUON_MOE, moe._with_gluon_tile = TABLE, with_tile
ids = torch.randint(1000, (1, 256), device="cuda")
decoder = model.decoder(batch=1, max_len=257)
decoder.prefill(ids)
torch.cuda.synchronize()
decoder.reset()
pr = cProfile.Profile()
pr.enable()
decoder.prefill(ids)
pr.disable()
torch.cuda.synchronize()
pstats.Stats(pr).sort_stats("tottime").print_stats(14)
