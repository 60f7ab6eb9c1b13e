"""On an H100: the MoE layer (gpt-oss-120b shape: E = 128, H = I = 2880, k = 4) with W1 and W2 on
a Gluon tile (`MoEConfig(ws="ws")`: the warp-specialized decoder tile, `ws="rs"`: the
register-operand tile; kernels/ws_moe.py) against the same config on the Triton kernels; each
checked against the reference path first, then timed interleaved (CUDA graphs;
`mxfp4.bench.moe.compare_configs`).

Run: PYTHONPATH=src python3 benchmarks/ws_moe_device.py [--ts 16,64,256,1024,4096,16384]
        [--tiles ws,rs]
Prints one line per T (or why it failed) and a table; writes $OUT/ws_moe.json when OUT is set.

Prediction, written before any run: the grouped GEMMs are most of the layer's time at T >= 64
and the warp-specialized tile overlaps their decode with the wgmmas, so the layer should gain
20-35 % where they are decode-bound (T = 256-4096), less at T = 16 (weight streaming
dominates) and at T = 16384 (W1's gather pass, 2 x 377 MB, costs ~0.25 ms).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import torch

from mxfp4.bench.moe import compare_configs, make_layer
from mxfp4.kernels.moe import default_config


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ts", default="16,64,256,1024,4096,16384")
    ap.add_argument("--tiles", default="ws,rs", help="Gluon tiles to time (MoEConfig.ws)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("ws_moe_device.py needs a CUDA GPU")
    import triton
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, triton {triton.__version__}")
    layer = make_layer()
    rows, failed = [], False
    for t in [int(x) for x in a.ts.split(",") if x]:
        base = default_config(t, layer.experts_per_token, layer.num_experts)
        row = dict(T=t)
        for tile in a.tiles.split(","):
            try:
                v1_us, us = compare_configs(layer, t, [base, dataclasses.replace(base, ws=tile)])
            except Exception as e:  # report and go on: one failure should not hide the others
                failed = True
                print(f"T={t} {tile}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
                continue
            row.update({"v1_us": round(v1_us, 1), f"{tile}_us": round(us, 1)})
            print(f"T={t}: v1 {v1_us:.1f} us, {tile} {us:.1f} us ({us / v1_us:.2f}x)", flush=True)
        rows.append(row)
    print(f"\n{'T':>6} " + " ".join(f"{c:>9}" for c in ["v1_us"] + [f"{t}_us" for t in
                                                                    a.tiles.split(",")]))
    for r in rows:
        print(f"{r['T']:>6} " + " ".join(f"{r.get(c, '-'):>9}" for c in
                                         ["v1_us"] + [f"{t}_us" for t in a.tiles.split(",")]))
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "ws_moe.json"), "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
