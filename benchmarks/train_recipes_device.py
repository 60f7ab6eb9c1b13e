"""H100 check and timing of the training recipes (issue 23 item 2).

Run: PYTHONPATH=src python benchmarks/train_recipes_device.py   (CUDA needed; about 1-2 minutes)

1. Correctness: the fused kernel (kernels/train_quantize.py) against its torch twin
   (train/hadamard_sr.quantize_dequantize_reference) on the GPU: nearest bit-identical without
   a Hadamard transform, and with one on integer-valued inputs (exact sums); on random bf16 with
   a Hadamard the share of differing elements (float32 summation order); SR unbiased; the "bf16"
   recipe equal to nn.Linear bit for bit (outputs and gradients).
2. Timing: one forward+backward of a RecipeLinear (bf16 weights and activations, M = 8192
   tokens, 1024 -> 4096 and 4096 -> 1024) per preset against nn.Linear, medians of CUDA-event
   timings (triton.testing.do_bench), with a breakdown: quantize (the six operand passes without
   Hadamard), Hadamard (the extra of the passes with it), GEMMs (three bf16 matmuls), rest.
Writes $OUT/train_recipes.json when OUT is set.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn
from triton.testing import do_bench

from mxfp4 import codec
from mxfp4.train import hadamard_sr as hs
from mxfp4.train.recipe_linear import RecipeLinear
from mxfp4.train.recipes import PRESETS, GemmSpec

DEV = "cuda"
M, SHAPES = 8192, ((1024, 4096), (4096, 1024))


def same_bits(a, b) -> bool:
    nan = torch.isnan(a)
    return bool(torch.equal(nan, torch.isnan(b)) and torch.equal(
        a.masked_fill(nan, 0).view(torch.int16), b.masked_fill(nan, 0).view(torch.int16)))


def check_kernel(rows: int = 2048, cols: int = 1024) -> list[str]:
    lines = []
    g = torch.Generator(device=DEV).manual_seed(0)
    for rule in ("floor", "ceil", "even", "mse"):
        for axis in (0, 1):
            x = (torch.randn(rows, cols, device=DEV, generator=g)
                 * torch.exp2(torch.randint(-12, 12, (rows, cols), device=DEV, generator=g))).bfloat16()
            x[0, 0], x[5, 7] = float("nan"), float("inf")
            spec = GemmSpec("mxfp4", "nearest", rule)
            got = hs.quantize_dequantize(x, axis, spec, backend="triton")
            ref = hs.quantize_dequantize(x, axis, spec, backend="reference")
            assert same_bits(got, ref), f"nearest {rule} axis {axis}: kernel != reference"
            for hb in (16, 32, 64, 128):
                xi = (torch.randint(-100, 100, (rows, cols), device=DEV, generator=g)
                      * torch.exp2(torch.randint(-6, 6, (rows, 1), device=DEV, generator=g))).bfloat16()
                spec = GemmSpec("mxfp4", "nearest", rule, hadamard=hb)
                signs = hs.random_signs(xi.shape[axis], hb, DEV)
                got = hs.quantize_dequantize(xi, axis, spec, signs=signs, backend="triton")
                ref = hs.quantize_dequantize(xi, axis, spec, signs=signs, backend="reference")
                assert same_bits(got, ref), f"nearest {rule} axis {axis} hadamard {hb}: differ"
    lines.append("kernel == reference bit for bit: nearest, 4 rules x 2 axes, Hadamard 0/16/32/64/128")
    x = torch.randn(2 * rows, 4 * cols, device=DEV, generator=g).bfloat16()
    for hb in (32, 64, 128):
        spec = GemmSpec("mxfp4", "nearest", "even", hadamard=hb)
        signs = hs.random_signs(4 * cols, 1, DEV)
        got = hs.quantize_dequantize(x, 1, spec, signs=signs, backend="triton")
        ref = hs.quantize_dequantize(x, 1, spec, signs=signs, backend="reference")
        diff = (got != ref).float().mean().item()
        assert diff < 1e-3, f"random bf16, hadamard {hb}: {diff:.2e} of the elements differ"
        lines.append(f"random bf16, Hadamard {hb}: {diff:.2e} of elements differ (float32 sum order)")
    # SR: unbiased, with the exact variance (hi - y)(y - lo) of rounding between two neighbours
    xs = torch.randn(rows, 256, device=DEV, generator=g)
    spec = GemmSpec("mxfp4", "stochastic", "ceil")
    outs = torch.stack([hs.quantize_dequantize(xs, 1, spec, seed=s, backend="triton") for s in range(256)])
    blocks = codec.to_blocks(xs, 1, 32)
    scale = torch.exp2(codec.scale_bytes(blocks, "ceil").float() - 127)[..., None]
    v = (blocks / scale).abs()
    step = torch.where(v < 2, 0.5, torch.where(v < 4, 1.0, 2.0))
    lo = (torch.floor(v / step) * step * scale).reshape(xs.shape).double()
    hi = (torch.ceil(v / step) * step * scale).reshape(xs.shape).double()
    assert ((outs.abs() == lo) | (outs.abs() == hi)).all(), "SR left the two grid neighbours"
    ax = xs.abs().double()
    se = ((hi - ax) * (ax - lo)).sqrt() / 16
    frac = ((outs.double().mean(0) - xs.double()).abs() > 3 * se + 1e-30).float().mean().item()
    assert frac < 0.02, f"SR mean beyond 3 sigma for {frac:.3f} of the elements"
    lines.append(f"SR (256 seeds): {frac:.4f} of the elements beyond 3 sigma of the input")
    # the bf16 recipe is nn.Linear, bit for bit, on the GPU too
    lin = nn.Linear(cols, 4 * cols, device=DEV, dtype=torch.bfloat16)
    layer = RecipeLinear.from_linear(nn.Linear(cols, 4 * cols, device=DEV, dtype=torch.bfloat16), "bf16")
    layer.weight.data.copy_(lin.weight.data)
    layer.bias.data.copy_(lin.bias.data)
    x = torch.randn(4, rows // 4, cols, device=DEV, dtype=torch.bfloat16)
    gy = torch.randn(4, rows // 4, 4 * cols, device=DEV, dtype=torch.bfloat16)
    outs = []
    for mod in (lin, layer):
        xx = x.clone().requires_grad_()
        y = mod(xx)
        y.backward(gy)
        outs.append((y, xx.grad, mod.weight.grad, mod.bias.grad))
    assert all(torch.equal(a, b) for a, b in zip(*outs)), "bf16 recipe differs from nn.Linear"
    lines.append("recipe 'bf16' == nn.Linear bit for bit (y, dx, dW, db)")
    return lines


BOTH_TILES = ((64, 128, 16), (64, 64, 8), (64, 64, 16), (128, 128, 16))


def _along(spec, seed, sign_seed):
    return dict(block_size=spec.block_size, scale_rule=spec.scale_rule, hadamard=spec.hadamard,
                stochastic=spec.rounding == "stochastic", seed=seed,
                sign_seed=sign_seed if spec.hadamard else None)


def both_pairs():
    sr = GemmSpec("mxfp4", "stochastic", "ceil")
    sr64 = GemmSpec("mxfp4", "stochastic", "ceil", hadamard=64)
    return {"nearest|sr-h64": (GemmSpec("mxfp4", "nearest", "even"), sr64),
            "sr-h64|sr-h64": (sr64, sr64), "sr|sr": (sr, sr)}


def check_both() -> list[str]:
    """The two-axis pass == two one-axis passes, bit for bit, for every tile swept."""
    from mxfp4.kernels import train_quantize as kt
    g = torch.Generator(device=DEV).manual_seed(3)
    x = (torch.randn(4096, 1408, device=DEV, generator=g)
         * torch.exp2(torch.randint(-8, 8, (4096, 1), device=DEV, generator=g))).bfloat16()
    for label, (s1, s0) in both_pairs().items():
        one1 = hs.quantize_dequantize(x, 1, s1, seed=5, sign_seed=7, backend="triton")
        one0 = hs.quantize_dequantize(x, 0, s0, seed=6, sign_seed=8, backend="triton")
        for tile in BOTH_TILES:
            q1, q0 = kt.quantize_dequantize_both(x, _along(s1, 5, 7), _along(s0, 6, 8), tile=tile)
            assert same_bits(q1, one1) and same_bits(q0, one0), f"two-axis {label} {tile} differs"
    return [f"two-axis pass == two one-axis passes bit for bit: {', '.join(both_pairs())}, "
            f"tiles {BOTH_TILES}"]


def time_both() -> list[dict]:
    """GB/s of the two-axis pass (1 read + 2 writes) against two one-axis passes (2 + 2)."""
    from mxfp4.kernels import train_quantize as kt
    rows = []
    for r, k in ((16384, 512), (16384, 1408), (8192, 4096)):
        x = torch.randn(r, k, device=DEV, dtype=torch.bfloat16)
        nbytes = 2 * x.numel()
        for label, (s1, s0) in both_pairs().items():
            two = time_ms(lambda: (hs.quantize_dequantize(x, 1, s1, seed=5, sign_seed=7),
                                   hs.quantize_dequantize(x, 0, s0, seed=6, sign_seed=8)))
            row = dict(shape=f"{r}x{k}", pair=label, two_passes_ms=two,
                       two_passes_GBps=4 * nbytes / two / 1e6)
            for tile in BOTH_TILES:
                t = time_ms(lambda: kt.quantize_dequantize_both(x, _along(s1, 5, 7),
                                                                _along(s0, 6, 8), tile=tile))
                row[f"both_{tile[0]}x{tile[1]}w{tile[2]}_ms"] = t
            best = min((v, c) for c, v in row.items() if c.startswith("both_"))
            row["best"], row["best_GBps"] = best[1], 3 * nbytes / best[0] / 1e6
            print(f"{r}x{k} {label:<15} two passes {two:.3f} ms ({row['two_passes_GBps']:.0f} GB/s)"
                  f"  best two-axis {best[0]:.3f} ms ({row['best_GBps']:.0f} GB/s) {best[1]}  "
                  + " ".join(f"{c[5:-3]}={v:.3f}" for c, v in row.items() if c.startswith("both_")),
                  flush=True)
            rows.append(row)
    return rows


def time_ms(fn) -> float:
    return do_bench(fn, warmup=25, rep=200, return_mode="median")


def operands(k, n):
    x = torch.randn(M, k, device=DEV, dtype=torch.bfloat16)
    w = torch.randn(n, k, device=DEV, dtype=torch.bfloat16) * 0.02
    dy = torch.randn(M, n, device=DEV, dtype=torch.bfloat16)
    return x, w, dy


def breakdown(name, k, n):
    """(quantize ms, Hadamard ms, GEMM ms) for one preset at one shape."""
    rec = PRESETS[name]
    x, w, dy = operands(k, n)
    passes = {"forward": ((x, 1), (w, 1)), "dgrad": ((dy, 1), (w, 0)), "wgrad": ((dy, 0), (x, 0))}
    quant = had = 0.0
    for gemm, ops in passes.items():
        spec = getattr(rec, gemm)
        if not spec.quantized:
            continue
        plain = GemmSpec("mxfp4", spec.rounding, spec.scale_rule, spec.block_size)
        for t, axis in ops:
            t_plain = time_ms(lambda: hs.quantize_dequantize(t, axis, plain, seed=1))
            quant += t_plain
            if spec.hadamard:
                signs = hs.random_signs(t.shape[axis], 1, DEV)
                had += time_ms(lambda: hs.quantize_dequantize(t, axis, spec, seed=1, signs=signs)) - t_plain
    gemm = (time_ms(lambda: x @ w.t()) + time_ms(lambda: dy @ w) + time_ms(lambda: dy.t() @ x))
    return quant, had, gemm


def time_layer(mod, k, n) -> float:
    x, _, dy = operands(k, n)
    x.requires_grad_()

    def step():
        mod.weight.grad = mod.bias.grad = x.grad = None
        mod(x).backward(dy)
    return time_ms(step)


def main():
    assert torch.cuda.is_available(), "this benchmark needs CUDA"
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    for line in check_kernel() + check_both():
        print("ok:", line)
    both = time_both()
    big = torch.empty(1 << 28, dtype=torch.uint8, device=DEV)
    copy_gbs = 2 * big.numel() / time_ms(lambda: big.clone()) / 1e6
    x, _, _ = operands(4096, 1024)
    spec = GemmSpec("mxfp4", "stochastic", "ceil")
    kern = {a: 4 * x.numel() / time_ms(lambda: hs.quantize_dequantize(x, a, spec, seed=1)) / 1e6
            for a in (0, 1)}
    print(f"copy {copy_gbs:.0f} GB/s; quantize pass (bf16 in+out, SR) along axis 1 "
          f"{kern[1]:.0f} GB/s, along axis 0 {kern[0]:.0f} GB/s")
    rows = []
    for k, n in SHAPES:
        base = nn.Linear(k, n, device=DEV, dtype=torch.bfloat16)
        t_lin = time_layer(base, k, n)
        rows.append(dict(shape=f"{k}->{n}", recipe="nn.Linear", ms=t_lin, ratio=1.0))
        for name in PRESETS:
            layer = RecipeLinear.from_linear(base, name).train()
            t = time_layer(layer, k, n)
            q, h, gm = breakdown(name, k, n)
            rows.append(dict(shape=f"{k}->{n}", recipe=name, ms=t, ratio=t / t_lin, quantize_ms=q,
                             hadamard_ms=h, gemm_ms=gm, rest_ms=t - q - h - gm))
    print(f"\nM = {M} tokens, bf16, one forward+backward (median ms, CUDA events)")
    print(f"{'shape':<10} {'recipe':<24} {'ms':>7} {'x bf16':>7} {'quant':>7} {'hadam':>7} "
          f"{'gemms':>7} {'rest':>7}")
    for r in rows:
        extra = "".join(f" {r[c]:7.3f}" for c in ("quantize_ms", "hadamard_ms", "gemm_ms", "rest_ms")
                        if c in r)
        print(f"{r['shape']:<10} {r['recipe']:<24} {r['ms']:7.3f} {r['ratio']:7.2f}{extra}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "train_recipes.json"), "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "copy_GBps": copy_gbs,
                       "quantize_GBps": kern, "rows": rows,
                       "two_axis": both}, f, indent=1)


if __name__ == "__main__":
    main()
