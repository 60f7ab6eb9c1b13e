"""On a GPU: the MoE decode (T = 1, 2, 4) with module-level knobs of kernels/moe.py set to
each given value, checked against the reference, then timed interleaved (CUDA graphs over 16
inputs per T), e.g. LOGITS_WARPS (warps per router program; its last program per token does
the top-k) or moe_gemv.SPIN_SLEEP_NS.
Run: PYTHONPATH=src python3 benchmarks/moe_knobs_probe.py [KNOB=VALUE ...]
     e.g. LOGITS_WARPS=4 LOGITS_WARPS=2
"""

import sys

import torch

from mxfp4.bench.kernels import graph_times_us
from mxfp4.bench.moe import make_layer, patched
from mxfp4.kernels import moe as km
from mxfp4.kernels import moe_gemv


def with_knob(knob, value, fn):
    """fn with knob (a name in kernels/moe.py, or moe_gemv.NAME) set to value."""
    if knob.startswith("moe_gemv."):
        return patched(moe_gemv, knob.split(".")[1], value, fn)
    return patched(km, knob, value, fn)


def main(variants):
    dev = torch.device("cuda")
    layer = make_layer(device=dev)
    for T in (1, 2, 4):
        g = torch.Generator(device=dev).manual_seed(T)
        xs = [torch.randn(T, layer.hidden_size, generator=g, device=dev).bfloat16()
              for _ in range(16)]
        ref = layer(xs[0], backend="reference").float()
        base = layer(xs[0], backend="triton")
        for knob, value in variants:
            out = with_knob(knob, value, lambda: layer(xs[0], backend="triton"))()
            assert ((out.float() - ref).norm() / ref.norm()).item() < 1e-2, (knob, value)
            assert torch.equal(out, base), (knob, value)  # knobs never change a bit
        ts = graph_times_us([[with_knob(kn, v, lambda x=x: layer(x, backend="triton"))
                              for x in xs] for kn, v in variants])
        print(f"T={T}: " + " | ".join(f"{kn}={v} {t:.2f} us"
                                      for (kn, v), t in zip(variants, ts)), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:] or ["LOGITS_WARPS=4", "LOGITS_WARPS=2", "LOGITS_WARPS=8"]
    main([(a.split("=")[0], int(a.split("=")[1])) for a in args])
