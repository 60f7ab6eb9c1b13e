"""One-off probe: the MoE's rs tile where v1 still wins (T >= 4096) and at T = 1024, with
W1 on 128-row tiles (two warpgroups, no loader warp, 127 registers: two CTAs an SM, against
the 64-row tile's 168 registers and one CTA at bm = 128) and with 64-row blocks; gpt-oss-120b
MoE shape, each config checked against the reference first.
PYTHONPATH=src python3 benchmarks/probe_moe_rs_bm.py [T,...]"""
import dataclasses
import sys

from mxfp4.bench.moe import compare_configs, make_layer
from mxfp4.kernels.moe import default_config

layer = make_layer()
for t in [int(a) for a in (sys.argv[1] if len(sys.argv) > 1 else "1024,4096,16384").split(",")]:
    base = default_config(t, layer.experts_per_token, layer.num_experts)
    rs = dataclasses.replace(base, ws="rs")

    def blocks(bm, w1_bn=64):
        return dataclasses.replace(rs, w1=dataclasses.replace(base.w1, bm=bm, bn=w1_bn),
                                   w2=dataclasses.replace(base.w2, bm=bm), tail=None)

    labels = ["v1", "rs", "rs w1 bn128", "rs bm64", "rs bm64 w1 bn128"]
    cfgs = [base, rs, dataclasses.replace(rs, w1=dataclasses.replace(base.w1, bn=128)),
            blocks(64), blocks(64, 128)]
    us = compare_configs(layer, t, cfgs)
    print(f"T={t} ({base.w1.bm}-row blocks): " + ", ".join(f"{label} {u:.1f}" for label, u
                                                         in zip(labels, us)) + " us", flush=True)
