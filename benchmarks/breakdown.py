"""On a GPU: where the time of the MoE layer and of the prefill path goes, kernel by kernel.

- MoE (GPT-OSS-120B layer shapes): CUDA time per kernel from torch.profiler, per T.
- Prefill (M = 4096, HopperWeight): the bf16 decode alone, cuBLAS alone, both in sequence, and
  the decode done in row chunks, each chunk's GEMM written into its columns of the output.
- Decode tiles (M = 1 and 64): mxfp4.linear with several tile / split-K configurations.
Run: PYTHONPATH=src python3 benchmarks/breakdown.py [part ...] (parts: the PARTS table below;
moeconfigs, codec, depth and interference time variants interleaved, so they share clocks)
"""

import sys
from collections import defaultdict

import torch
import torch.nn.functional as F

import mxfp4
from mxfp4.bench.kernels import _copies, graph_time_us, graph_times_us
from mxfp4.bench.moe import make_layer
from mxfp4.kernels import linear as kl
from mxfp4.kernels import prefill
from mxfp4.kernels.gemv import gemv_config
from mxfp4.layouts import prepack


def _weights(g, dev, k, n):
    """An MXFP4 weight [n, k] and enough HopperWeight copies of it to rotate past the L2."""
    w = mxfp4.quantize(torch.randn(n, k, generator=g, device=dev) * 0.02)
    return w, _copies(lambda: prepack(w), w.nbytes)


def moe_breakdown(dev) -> None:
    from torch.profiler import ProfilerActivity, profile

    layer = make_layer(device=dev)
    g = torch.Generator(device=dev).manual_seed(1)
    for T in (1, 16, 64, 256, 4096):
        xs = [torch.randn(T, 2880, generator=g, device=dev).bfloat16() for _ in range(8)]
        for x in xs:
            layer(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for x in xs:
                layer(x)
            torch.cuda.synchronize()
        per = defaultdict(float)
        for ev in prof.events():
            if ev.device_type == torch.autograd.DeviceType.CUDA:
                per[ev.name[:40]] += ev.device_time / len(xs)
        total = sum(per.values())
        parts = " | ".join(f"{n} {t:.1f}" for n, t in sorted(per.items(), key=lambda p: -p[1]))
        whole = graph_time_us([lambda x=x: layer(x) for x in xs])
        print(f"MoE T={T}: graph {whole:.1f} us, kernels {total:.1f} us: {parts}", flush=True)


def moe_configs(dev) -> None:
    """The MoE layer under several tile configurations per T, timed interleaved."""
    from mxfp4.kernels.moe import GemmConfig as G, MoEConfig, default_config

    layer = make_layer(device=dev)
    g = torch.Generator(device=dev).manual_seed(2)
    for T in (1, 4, 16, 64, 256):
        xs = [torch.randn(T, 2880, generator=g, device=dev).bfloat16() for _ in range(8)]
        d = default_config(T, 4, 128)
        if d.decode:
            cands = [d, MoEConfig(True, G(16, 64, 256, 4, 2), d.w2),
                      MoEConfig(True, G(16, 64, 128, 4, 3), G(16, 64, 128, 4, 3, split=3))]
        else:
            w = d.w1
            cands = [d, MoEConfig(False, G(w.bm, w.bn, w.bk, 4, 2, maxnreg=96),
                               G(w.bm, w.bn, w.bk, 4, 2, maxnreg=96)),
                     MoEConfig(False, G(w.bm, w.bn, 128, 4, 3, maxnreg=96),
                               G(w.bm, w.bn, 128, 4, 3, maxnreg=96))]
        lists = [[lambda x=x, c=c: layer(x, config=c) for x in xs] for c in cands]
        times = graph_times_us(lists)
        print(f"MoE configs T={T}: " + " | ".join(
            f"{c.w1.bm}x{c.w1.bn}x{c.w1.bk}s{c.w1.stages}r{c.w1.maxnreg}/w2k{c.w2.bk} {t:.1f}"
            for c, t in zip(cands, times)), flush=True)


def decode_depth(dev) -> None:
    """Decode (MoE T = 1, 4; linear M = 1): K step width and pipeline depth, timed interleaved."""
    from mxfp4.kernels.moe import GemmConfig as G, MoEConfig

    depths = [(256, 3), (256, 4), (256, 5), (512, 2), (512, 3), (128, 5), (128, 6)]
    layer = make_layer(device=dev)
    g = torch.Generator(device=dev).manual_seed(3)
    for T in (1, 4):
        xs = [torch.randn(T, 2880, generator=g, device=dev).bfloat16() for _ in range(8)]
        cands = [MoEConfig(True, G(16, 64, bk, 4, st), G(16, 64, bk, 4, st)) for bk, st in depths]
        times = graph_times_us([[lambda x=x, c=c: layer(x, config=c) for x in xs] for c in cands])
        print(f"MoE decode T={T}: " + " | ".join(f"bk{bk}s{st} {t:.1f}" for (bk, st), t in
                                                 zip(depths, times)), flush=True)
    del layer
    for k, n in [(4096, 14336), (14336, 4096), (2880, 5760)]:
        w, packs = _weights(g, dev, k, n)
        x = torch.randn(1, k, generator=g, device=dev).bfloat16()
        base = kl.pick_config(1, n, packs[0].codes.shape[1] * 2, 132)
        cfgs = [dict(base, BK=bk, num_stages=st) for bk, st in depths]
        times = graph_times_us([[lambda i=i, c=c: kl.linear(x, packs[i], None, c)
                                 for i in range(len(packs))] for c in cfgs])
        print(f"linear M=1 {k}->{n} (BN={base['BN']} split {base['SPLIT_K']}): " + " | ".join(
            f"bk{bk}s{st} {t:.1f}" for (bk, st), t in zip(depths, times)), flush=True)
        del packs


def codec_tiles(dev) -> None:
    """quantize / dequantize of a bf16 8192^2 tensor under several tile options, interleaved."""
    from mxfp4.kernels import quantize as kq

    g = torch.Generator(device=dev).manual_seed(0)
    xs = _copies(lambda: torch.randn(8192, 8192, generator=g, device=dev).bfloat16(), 8192 ** 2 * 2)
    qs = [mxfp4.quantize(x) for x in xs]
    qt = [None, (8192, 8, False, 0, 1024), (8192, 4, False, 0, 1024), (4096, 4, False, 0, 2048),
          (2048, 4, False, 0, 1024), (4096, 8, False, 0, 1024), (16384, 8, False, 0, 2048),
          (8192, 8, False, 0, 2048)]
    times = graph_times_us([[lambda x=x, t=t: kq.quantize(x, 1, 32, "floor", "nearest", None, t)
                             for x in xs] for t in qt])
    print("quantize: " + " | ".join(f"{t or 'default'} {u:.1f}" for t, u in zip(qt, times)))
    dt = [None, (4096, 4, False, 0, 1024), (8192, 8, False, 0, 1024), (4096, 8), (1024, 4),
          (2048, 4, False, 0, 512), (2048, 8), (8192, 8, False, 0, 2048)]
    times = graph_times_us([[lambda q=q, t=t: kq.dequantize(q.codes, q.scales, q.shape, 1, 32,
                                                            torch.bfloat16, t) for q in qs]
                            for t in dt])
    print("dequantize: " + " | ".join(f"{t or 'default'} {u:.1f}" for t, u in zip(dt, times)))


def pdl_ab(dev) -> None:
    """mxfp4.linear with and without programmatic dependent launch, back-to-back calls."""
    g = torch.Generator(device=dev).manual_seed(5)
    for k, n in [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]:
        w, packs = _weights(g, dev, k, n)
        for m in (1, 16, 64):
            x = torch.randn(m, k, generator=g, device=dev).bfloat16()
            kp = packs[0].codes.shape[1] * 2
            gemv = m == 1 and kl.use_gemv(m, n, k)
            base = gemv_config(m, n, kp, 132) if gemv else kl.pick_config(m, n, kp, 132)
            cfgs = [dict(base, launch_pdl=p) for p in (True, False)]
            times = graph_times_us([[lambda i=i, c=c: kl.linear(x, packs[i], None, c)
                                     for i in range(len(packs))] for c in cfgs])
            print(f"pdl {k}->{n} M={m}{' gemv' if gemv else ''}: on {times[0]:.1f} off {times[1]:.1f}",
                  flush=True)
        del packs


def chunked(x, w, chunk):
    """x @ W.T with W decoded chunk rows at a time, each GEMM into its slice of the output."""
    n, k = w.shape
    out = torch.empty(x.shape[0], n, dtype=torch.bfloat16, device=x.device)
    for n0 in range(0, n, chunk):
        part = w.codes[n0:n0 + chunk], w.scales[:, n0:n0 + chunk]
        wc = torch.empty(min(chunk, n - n0), k, dtype=torch.bfloat16, device=x.device)
        rows, groups = wc.shape[0], w.codes.shape[1] * 2 // 64
        br, bg, warps, _ = prefill.HOPPER_TILE
        prefill._hopper_to_bf16_kernel[(-(-rows // br), -(-groups // bg))](
            part[0], part[1], wc, rows, k, groups, w.codes.shape[1], w.scales.shape[1],
            BR=br, BG=bg, ROW_MAJOR=False, num_warps=warps)
        torch.mm(x, wc.t(), out=out[:, n0:n0 + chunk])
    return out


def prefill_breakdown(dev) -> None:
    g = torch.Generator(device=dev).manual_seed(0)
    for k, n in [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]:
        w, packs = _weights(g, dev, k, n)
        wb = w.dequantize(torch.bfloat16)
        bfs = _copies(lambda: wb.clone(), wb.nbytes)
        x = torch.randn(4096, k, generator=g, device=dev).bfloat16()
        ref = F.linear(x, wb)
        r = range(len(packs))
        line = [f"cublas {graph_time_us([lambda i=i: F.linear(x, bfs[i % len(bfs)]) for i in range(len(bfs))]):.1f}",
                f"decode {graph_time_us([lambda i=i: prefill.weight_bf16(packs[i]) for i in r]):.1f}",
                f"prefill {graph_time_us([lambda i=i: prefill.linear(x, packs[i], None) for i in r]):.1f}"]
        for ch in (1024, 2048, 4096):
            if ch >= n:
                continue
            err = (chunked(x, packs[0], ch).float() - ref.float()).abs().max().item()
            us = graph_time_us([lambda i=i: chunked(x, packs[i], ch) for i in r])
            line.append(f"chunk{ch} {us:.1f} (maxdiff {err:.2g})")
        print(f"prefill {k}->{n} M=4096: " + " | ".join(line), flush=True)
        del packs, bfs


def prefill_interference(dev) -> None:
    """Is cuBLAS slower after the decode because it reads the fresh W, or just after it?"""
    g = torch.Generator(device=dev).manual_seed(0)
    for k, n in [(4096, 14336), (2880, 5760)]:
        w, packs = _weights(g, dev, k, n)
        wb = w.dequantize(torch.bfloat16)
        bfs = _copies(lambda: wb.clone(), wb.nbytes)
        x = torch.randn(4096, k, generator=g, device=dev).bfloat16()
        keep = torch.empty_like(wb)
        r = range(len(packs))

        def into(i):
            prefill.weight_bf16(packs[i])  # result dropped
            return F.linear(x, bfs[i % len(bfs)])

        def persistent(i):
            keep.copy_(prefill.weight_bf16(packs[i]))
            return F.linear(x, keep)

        def cloned(i):
            return F.linear(x, bfs[i % len(bfs)].clone())

        def after(i):
            y = F.linear(x, bfs[i % len(bfs)])
            prefill.weight_bf16(packs[i])
            return y

        line = []
        for name, fn in [("cublas", lambda i: F.linear(x, bfs[i % len(bfs)])), ("decode+cublas(other W)", into),
                         ("cublas+decode", after), ("copy+cublas(copy)", persistent),
                         ("clone+cublas(clone)", cloned),
                         ("prefill", lambda i: prefill.linear(x, packs[i], None)),
                         ("cublas", lambda i: F.linear(x, bfs[i % len(bfs)]))]:
            line.append(f"{name} {graph_time_us([lambda i=i: fn(i) for i in r]):.1f}")
        print(f"interference {k}->{n} M=4096: " + " | ".join(line), flush=True)
        del packs, bfs


def tile_sweep(dev) -> None:
    g = torch.Generator(device=dev).manual_seed(0)
    for k, n in [(4096, 14336), (14336, 4096), (2880, 5760), (2880, 2880)]:
        w, packs = _weights(g, dev, k, n)
        ref_w = w.dequantize(torch.float32)
        kp = packs[0].codes.shape[1] * 2
        for m in (1, 64):
            x = torch.randn(m, k, generator=g, device=dev).bfloat16()
            ref = F.linear(x.float(), ref_w)
            base = kl.pick_config(m, n, kp, 132)
            cfgs = [("default", dict(base))]
            for bn, warps, stages in ((64, 4, 3), (64, 4, 4), (128, 8, 3), (128, 8, 5), (128, 4, 3)):
                for split in (1, 2, 4):
                    cfgs.append((f"bn{bn}w{warps}s{stages}/{split}",
                                 dict(base, BN=bn, BK=256, SPLIT_K=split, num_warps=warps,
                                      num_stages=stages)))
            res = []
            for name, cfg in cfgs:
                try:
                    y = kl.linear(x, packs[0], None, cfg).float()
                    err = ((y - ref).norm() / ref.norm()).item()
                    assert err < 1e-2, err
                    us = graph_time_us([lambda i=i: kl.linear(x, packs[i], None, cfg)
                                        for i in range(len(packs))])
                    res.append((us, name))
                except Exception as e:  # a config the shape cannot take
                    res.append((float("inf"), f"{name} fail {type(e).__name__}"))
            res.sort()
            default = next(u for u, nm in res if nm == "default")
            print(f"tiles {k}->{n} M={m}: default {default:.1f} | "
                  + " | ".join(f"{nm} {u:.1f}" for u, nm in res[:6]), flush=True)
        del packs


PARTS = {"moe": moe_breakdown, "moeconfigs": moe_configs, "codec": codec_tiles,
         "depth": decode_depth, "prefill": prefill_breakdown,
         "interference": prefill_interference, "tiles": tile_sweep, "pdl": pdl_ab}


def main() -> None:
    dev = torch.device("cuda")
    for part in sys.argv[1:] or ["moe", "prefill", "tiles"]:
        PARTS[part](dev)


if __name__ == "__main__":
    main()
