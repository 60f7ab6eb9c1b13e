"""Fully quantized training recipes (mxfp4.train.recipes, recipe_linear, hadamard_sr) and the
fused train-quantize kernel against its reference twin (in the Triton interpreter on CPU)."""

import copy

import pytest
import torch
from torch import nn

from mxfp4 import codec
from mxfp4.train import hadamard_sr as hs
from mxfp4.train.recipe_linear import RecipeLinear, apply_recipe, set_step
from mxfp4.train.recipes import PRESETS, GemmSpec, Recipe, recipe

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SR = GemmSpec("mxfp4", "stochastic", "ceil")


def _same_bits(a, b):
    """Bit for bit, except that any NaN matches any NaN (float32 -> bf16 casts differ in payload)."""
    nan = torch.isnan(a)
    view = {2: torch.int16, 4: torch.int32}[a.element_size()]
    return torch.equal(nan, torch.isnan(b)) and torch.equal(
        a.masked_fill(nan, 0).contiguous().view(view), b.masked_fill(nan, 0).contiguous().view(view))


def _run(layer, x, g):
    x = x.clone().requires_grad_()
    y = layer(x)
    y.backward(g)
    return y, x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", ["2d", "3d", "strided"])
def test_bf16_recipe_equals_linear(dtype, bias, shape):
    torch.manual_seed(0)
    lin = nn.Linear(96, 64, bias=bias, dtype=dtype)
    layer = RecipeLinear.from_linear(copy.deepcopy(lin), "bf16")
    x = {"2d": lambda: torch.randn(40, 96), "3d": lambda: torch.randn(3, 20, 96),
         "strided": lambda: torch.randn(20, 3, 96).transpose(0, 1)}[shape]().to(dtype)
    g = torch.randn(*x.shape[:-1], 64, dtype=dtype)
    y1, dx1 = _run(lin, x, g)
    y2, dx2 = _run(layer, x, g)
    assert torch.equal(y1, y2) and torch.equal(dx1, dx2)
    assert torch.equal(lin.weight.grad, layer.weight.grad)
    if bias:
        assert torch.equal(lin.bias.grad, layer.bias.grad)


def test_apply_recipe_bf16_model_equals_original_and_shares_parameters():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 32))
    twin = copy.deepcopy(model)
    summary = apply_recipe(twin, "bf16")
    assert summary["swapped"] == ["0", "2"] and isinstance(twin[2], RecipeLinear)
    x, g = torch.randn(8, 5, 64), torch.randn(8, 5, 32)
    y1, dx1 = _run(model, x, g)
    y2, dx2 = _run(twin, x, g)
    assert torch.equal(y1, y2) and torch.equal(dx1, dx2)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad)
    layer = nn.Linear(32, 32)
    assert RecipeLinear.from_linear(layer, "mxfp4-sr").weight is layer.weight


def _grad_samples(rec, seeds, m=32, k=32, n=32):
    torch.manual_seed(2)
    layer = RecipeLinear(k, n, recipe=rec)
    x = torch.randn(m, k) * torch.exp2(torch.randint(-3, 3, (m, 1)).float())
    g = torch.randn(m, n)
    exact_layer = RecipeLinear.from_linear(nn.Linear(k, n), "bf16")
    exact_layer.weight, exact_layer.bias = layer.weight, layer.bias
    _, dx_ref = _run(exact_layer, x, g)
    dw_ref = layer.weight.grad.clone()
    dxs, dws = [], []
    for s in range(seeds):
        layer.weight.grad = None
        set_step(layer, s)
        dxs.append(_run(layer, x, g)[1])
        dws.append(layer.weight.grad.clone())
    return (torch.stack(dxs), dx_ref), (torch.stack(dws), dw_ref)


def _z_scores(samples, exact):
    mean, std = samples.double().mean(0), samples.double().std(0)
    se = std / samples.shape[0] ** 0.5
    return (mean - exact.double()).abs() / se.clamp_min(1e-30)


@pytest.mark.parametrize("hadamard", [0, 32])
def test_stochastic_rounding_gradient_is_unbiased(hadamard):
    spec = GemmSpec("mxfp4", "stochastic", "ceil", hadamard=hadamard)
    rec = Recipe("sr", dgrad=spec, wgrad=spec)  # forward exact: dy is the same every seed
    for samples, exact in _grad_samples(rec, seeds=150):
        z = _z_scores(samples, exact)
        assert (samples.std(0) > 0).float().mean() > 0.9  # it is random
        assert (z > 3).float().mean() <= 0.02, f"{(z > 3).float().mean():.3f} beyond 3 sigma"
        # and the mean approaches the exact gradient: much closer than one sample is
        rel = lambda a: ((a - exact).norm() / exact.norm()).item()
        assert rel(samples.mean(0)) < rel(samples[0]) / 8


def test_clipping_scale_rule_makes_sr_biased():
    """The same statistic flags a biased estimator: the floor rule clips block maxima past 6."""
    spec = GemmSpec("mxfp4", "stochastic", "floor")
    (dx, dx_exact), _ = _grad_samples(Recipe("sr-floor", dgrad=spec), seeds=150)
    assert (_z_scores(dx, dx_exact) > 3).float().mean() > 0.1


def test_random_hadamard_is_orthogonal_and_keeps_the_gemm():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(24, 128, generator=g), torch.randn(40, 128, generator=g)
    for size in (16, 64):
        signs = hs.random_signs(128, 11, "cpu")
        ra, rb = hs.rotate_pm1(a, 1, size, signs), hs.rotate_pm1(b, 1, size, signs)
        exact = a.double() @ b.double().T
        assert torch.allclose(ra @ rb.T / size, exact, rtol=0, atol=1e-12)
        q = hs.rotate_pm1(torch.eye(128), 1, size, signs) / size ** 0.5  # the matrix D·H/√size
        assert torch.allclose(q @ q.T, torch.eye(128, dtype=torch.float64), atol=1e-15)
        # along axis 0 (wgrad's token axis) too
        ra0, rb0 = hs.rotate_pm1(a.T, 0, size, signs), hs.rotate_pm1(b.T, 0, size, signs)
        assert torch.allclose(ra0.T @ rb0 / size, exact, rtol=0, atol=1e-12)
    assert not torch.equal(hs.random_signs(128, 1, "cpu"), hs.random_signs(128, 2, "cpu"))


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_trains_a_tiny_layer(name):
    torch.manual_seed(4)
    ref = nn.Linear(64, 128)
    layer = RecipeLinear.from_linear(copy.deepcopy(ref), name)
    x, g = torch.randn(2, 48, 64), torch.randn(2, 48, 128)  # 96 tokens: wgrad pads to 128
    y1, dx1 = _run(ref, x, g)
    y2, dx2 = _run(layer, x, g)
    assert y2.shape == y1.shape and dx2.shape == dx1.shape
    rec = layer.recipe
    for quantized, a, b in ((rec.forward.quantized, y1, y2), (rec.dgrad.quantized, dx1, dx2),
                            (rec.wgrad.quantized, ref.weight.grad, layer.weight.grad)):
        assert torch.isfinite(b).all()
        err = ((a - b).norm() / a.norm()).item()
        assert (0.01 < err < 0.5) if quantized else err == 0.0, (name, err)
    assert torch.equal(ref.bias.grad, layer.bias.grad)  # the sum of dy: never quantized


def test_steps_draw_fresh_randomness_and_replay():
    torch.manual_seed(5)
    layer = RecipeLinear(64, 64, recipe="mxfp4-sr-hadamard")
    x, g = torch.randn(64, 64), torch.randn(64, 64)
    first = _run(layer, x, g)[1]
    assert layer.step == 1
    second = _run(layer, x, g)[1]
    assert not torch.equal(first, second)
    set_step(layer, 0)
    assert torch.equal(_run(layer, x, g)[1], first)
    fixed = RecipeLinear.from_linear(nn.Linear(64, 64), recipe("mxfp4-sr-hadamard", hadamard_signs="fixed"))
    assert fixed.recipe.hadamard_signs == "fixed"
    layer.eval()
    _run(layer, x, g)
    assert layer.step == 1  # eval calls reuse the step


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="unknown training recipe 'fp3'.*mxfp4-sr-hadamard"):
        recipe("fp3")
    with pytest.raises(ValueError, match="in_features = 48, which is not a multiple of its block size 32"):
        RecipeLinear(48, 64, recipe="mxfp4-forward")
    with pytest.raises(ValueError, match="out_features = 96.*Hadamard size 64"):
        RecipeLinear(64, 96, recipe="mxfp4-sr-hadamard")
    with pytest.raises(ValueError, match="hadamard must be 0 \\(off\\) or one of"):
        GemmSpec("mxfp4", hadamard=24)
    with pytest.raises(ValueError, match="only makes sense before MXFP4"):
        GemmSpec("bf16", hadamard=32)
    with pytest.raises(ValueError, match="rounding must be one of"):
        GemmSpec("mxfp4", rounding="up")
    with pytest.raises(ValueError, match="hadamard_signs must be one of"):
        Recipe(hadamard_signs="random")
    with pytest.raises(ValueError, match="no Linear layer to swap.*no nn.Linear"):
        apply_recipe(nn.Sequential(nn.ReLU()), "mxfp4-sr")
    with pytest.raises(ValueError, match="no Linear layer to swap.*in_features = 40"):
        apply_recipe(nn.Sequential(nn.Linear(40, 64)), "mxfp4-nearest")
    with pytest.raises(ValueError, match="length 48, not a multiple of the block size 32 and Hadamard size 32"):
        hs.quantize_dequantize(torch.randn(4, 48), 1, replace_h(SR, 32))
    with pytest.raises(ValueError, match="backend must be one of"):
        hs.quantize_dequantize(torch.randn(4, 64), 1, SR, backend="fast")


def replace_h(spec, size):
    return GemmSpec(spec.format, spec.rounding, spec.scale_rule, spec.block_size, size)


def _special(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * torch.exp2(torch.randint(-20, 20, shape, generator=g).float())
    flat = x.view(-1)
    for i, v in enumerate([float("nan"), float("inf"), -0.0, 1e-40, 0.25, 2.5, 5.0, 7.0]):
        flat[(i * 37) % flat.numel()] = v
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("hadamard", [0, 16])
@pytest.mark.parametrize("rule", codec.SCALE_RULES)
def test_kernel_nearest_is_bit_identical_to_reference(dtype, axis, hadamard, rule):
    spec = GemmSpec("mxfp4", "nearest", rule, 32, hadamard)
    if hadamard:  # integers times powers of two: every rotated sum is exact in float32
        g = torch.Generator().manual_seed(6)
        x = (torch.randint(-60, 60, (32, 64), generator=g).float()
             * torch.exp2(torch.randint(-8, 8, (32, 1), generator=g).float()))
    else:
        x = _special((32, 64), 6)
    x = x.to(dtype)
    signs = hs.random_signs(x.shape[axis], 7, "cpu") if hadamard else None
    got = hs.quantize_dequantize(x.to(DEV), axis, spec, signs=signs, backend="triton")
    ref = hs.quantize_dequantize(x, axis, spec, signs=signs, backend="reference")
    assert got.dtype == dtype and got.stride() == x.stride()
    assert _same_bits(got.cpu(), ref)


def test_kernel_transposed_input_and_float32_output():
    x = _special((64, 32), 8).to(torch.bfloat16).T  # a column-major view: K is strided
    spec = GemmSpec("mxfp4", "nearest", "even")
    got = hs.quantize_dequantize(x.to(DEV), 1, spec, dtype=torch.float32, backend="triton")
    ref = hs.quantize_dequantize(x, 1, spec, dtype=torch.float32, backend="reference")
    assert _same_bits(got.cpu(), ref)


@pytest.mark.parametrize("hadamard", [0, 32])
def test_kernel_stochastic_rounding_is_unbiased_and_on_the_grid(hadamard):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(16, 64, generator=g)
    spec = GemmSpec("mxfp4", "stochastic", "ceil", 32, hadamard)
    signs = hs.random_signs(64, 1, "cpu") if hadamard else None
    y = hs.rotate_pm1(x, 1, hadamard, signs).float() if hadamard else x  # what is rounded
    blocks = codec.to_blocks(y, 1, 32)
    scale = torch.exp2(codec.scale_bytes(blocks, "ceil").float() - 127)[..., None]
    v = (blocks / scale).abs()
    step = torch.where(v < 2, 0.5, torch.where(v < 4, 1.0, 2.0))
    lo = (torch.floor(v / step) * step * scale).reshape(y.shape) * y.sign()
    hi = (torch.ceil(v / step) * step * scale).reshape(y.shape) * y.sign()
    outs = torch.stack([hs.quantize_dequantize(x.to(DEV), 1, spec, seed=s, signs=signs,
                                               backend="triton").cpu() for s in range(64)])
    assert ((outs == lo) | (outs == hi)).all()
    assert torch.equal(outs[3], hs.quantize_dequantize(x.to(DEV), 1, spec, seed=3, signs=signs,
                                                       backend="triton").cpu())
    # the exact standard error of SR between lo and hi: sqrt((hi - y)(y - lo) / samples)
    se = ((hi.double() - y.double()) * (y.double() - lo.double())).abs().sqrt() / 8
    z = (outs.double().mean(0) - y.double()).abs() / se.clamp_min(1e-30)
    assert (z > 3).float().mean() <= 0.02
    assert (outs.std(0) > 0).float().mean() > 0.5


@pytest.mark.parametrize("axis", [0, 1])
def test_kernel_draws_the_reference_signs_from_a_seed(axis):
    """The kernel's in-register signs (sign_seed) are random_signs(n, sign_seed), bit for bit."""
    g = torch.Generator().manual_seed(12)
    x = (torch.randint(-60, 60, (64, 64), generator=g).float()
         * torch.exp2(torch.randint(-8, 8, (64, 1), generator=g).float()))  # exact rotated sums
    spec = GemmSpec("mxfp4", "nearest", "even", 32, 32)
    got = hs.quantize_dequantize(x.to(DEV), axis, spec, sign_seed=123456789, backend="triton")
    signs = hs.random_signs(64, 123456789)
    ref = hs.quantize_dequantize(x, axis, spec, signs=signs, backend="reference")
    assert _same_bits(got.cpu(), ref)
    assert torch.equal(hs.quantize_dequantize(x, axis, spec, sign_seed=123456789, backend="reference"), ref)
    assert not torch.equal(hs.quantize_dequantize(x, axis, spec, sign_seed=7, backend="reference"), ref)
    with pytest.raises(ValueError, match="not both"):
        hs.quantize_dequantize(x, axis, spec, signs=signs, sign_seed=1)


def test_random_signs_are_balanced_and_fixed_by_the_seed():
    s = hs.random_signs(1 << 16, 5)
    assert set(s.unique().tolist()) == {-1.0, 1.0} and abs(s.mean().item()) < 0.02
    assert torch.equal(s, hs.random_signs(1 << 16, 5)) and not torch.equal(s, hs.random_signs(1 << 16, 6))
    assert torch.equal(hs.random_signs(8, 5), s[:8])  # sign i depends on (i, seed) alone


_BOTH_CASES = [(GemmSpec("mxfp4", "nearest", "even"), GemmSpec("mxfp4", "stochastic", "ceil", 32, 64)),
               (GemmSpec("mxfp4", "stochastic", "ceil", 32, 32), GemmSpec("mxfp4", "nearest", "mse", 16)),
               (GemmSpec("mxfp4", "stochastic", "ceil", 32, 128), GemmSpec("mxfp4", "stochastic", "ceil", 32, 16))]


@pytest.mark.parametrize("spec1,spec0", _BOTH_CASES)
def test_kernel_both_axes_equal_two_one_axis_passes(spec1, spec0):
    """One read, two outputs: each is what the one-axis kernel gives, SR and signs included."""
    g = torch.Generator().manual_seed(13)
    x = _special((192, 256), 14) if not (spec1.hadamard or spec0.hadamard) else \
        torch.randn(192, 256, generator=g) * torch.exp2(torch.randint(-4, 4, (192, 1), generator=g).float())
    x = x.to(torch.bfloat16).to(DEV)
    kw = dict(seeds=(11, 12), sign_seeds=(21, 22))
    q1, q0 = hs.quantize_dequantize_both(x, spec1, spec0, backend="triton", **kw)
    one1 = hs.quantize_dequantize(x, 1, spec1, seed=11, sign_seed=21, backend="triton")
    one0 = hs.quantize_dequantize(x, 0, spec0, seed=12, sign_seed=22, backend="triton")
    assert _same_bits(q1.cpu(), one1.cpu()) and _same_bits(q0.cpu(), one0.cpu())
    assert q1.dtype == q0.dtype == torch.bfloat16 and not _same_bits(q1.cpu(), q0.cpu())
    r1, r0 = hs.quantize_dequantize_both(x.cpu(), spec1, spec0, backend="reference", **kw)
    assert _same_bits(r1, hs.quantize_dequantize(x.cpu(), 1, spec1, seed=11, sign_seed=21,
                                                 backend="reference"))
    assert _same_bits(r0, hs.quantize_dequantize(x.cpu(), 0, spec0, seed=12, sign_seed=22,
                                                 backend="reference"))
    with pytest.raises(ValueError, match="not a multiple"):
        hs.quantize_dequantize_both(x[:100], spec1, spec0, backend="triton")


def _layer_run_on_kernels(monkeypatch, name, mode):
    """A RecipeLinear's y, dx, dW with every operand on the Triton kernels (interpreter on CPU):
    mode "both" (the two-axis pass), "two" (two one-axis passes instead) or "reference" (the
    torch twin for every operand), on the same device so the GEMMs are the same."""
    import functools

    from mxfp4.train import recipe_linear as rl

    backend = "reference" if mode == "reference" else "triton"
    one = functools.partial(hs.quantize_dequantize, backend=backend)

    def two_passes(t, spec1, spec0, *, seeds, sign_seeds, dtype):
        return (one(t, 1, spec1, seed=seeds[0], sign_seed=sign_seeds[0], dtype=dtype),
                one(t, 0, spec0, seed=seeds[1], sign_seed=sign_seeds[1], dtype=dtype))
    monkeypatch.setattr(rl, "quantize_dequantize", one)
    monkeypatch.setattr(rl, "quantize_dequantize_both", functools.partial(
        hs.quantize_dequantize_both, backend="triton") if mode == "both" else two_passes)
    torch.manual_seed(15)
    layer = RecipeLinear(128, 64, recipe=name).to(DEV)
    x, g = torch.randn(64, 128, device=DEV), torch.randn(64, 64, device=DEV)
    y, dx = _run(layer, x, g)
    return y, dx, layer.weight.grad


@pytest.mark.parametrize("name", ["mxfp4-sr-hadamard", "mxfp4-nearest", "mxfp4-wgrad"])
def test_layer_one_pass_operands_equal_separate_passes(monkeypatch, name):
    got = _layer_run_on_kernels(monkeypatch, name, "both")
    want = _layer_run_on_kernels(monkeypatch, name, "two")
    assert all(_same_bits(a.cpu(), b.cpu()) for a, b in zip(got, want))
    if name == "mxfp4-nearest":  # no randomness: the kernels give the reference's bits
        ref = _layer_run_on_kernels(monkeypatch, name, "reference")
        assert all(_same_bits(a.cpu(), b.cpu()) for a, b in zip(got, ref))
