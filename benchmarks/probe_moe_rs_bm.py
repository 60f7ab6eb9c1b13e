"""One-off probe: the MoE's rs tile at T >= 4096 with smaller row blocks (bm = 64 or 32: 104 or
80 registers, two or three CTAs an SM, against bm = 128's one), against v1's default, gpt-oss-120b
MoE shape. PYTHONPATH=src python3 benchmarks/probe_moe_rs_bm.py"""
import dataclasses

from mxfp4.bench.moe import compare_configs, make_layer
from mxfp4.kernels.moe import default_config

layer = make_layer()
for t in (4096, 16384):
    base = default_config(t, layer.experts_per_token, layer.num_experts)
    cfgs = [base, dataclasses.replace(base, ws="rs")]
    for bm in (64, 32):
        g = dataclasses.replace(base.w1, bm=bm)
        cfgs.append(dataclasses.replace(base, w1=g, w2=dataclasses.replace(base.w2, bm=bm),
                                        tail=None, ws="rs"))
    us = compare_configs(layer, t, cfgs)
    print(f"T={t} base {base}\n  v1 {us[0]:.1f}  rs {us[1]:.1f}  rs bm64 {us[2]:.1f}  "
          f"rs bm32 {us[3]:.1f} us", flush=True)
