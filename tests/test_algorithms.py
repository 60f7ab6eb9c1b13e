"""GPTQ error feedback and the Hessian it uses."""

import pytest
import torch

import mxfp4
from mxfp4.algorithms.gptq import HessianAccumulator, gptq_quantize
from mxfp4.algorithms.hadamard import rotate
from mxfp4.codec import scale_bytes


def _correlated_inputs(rows, k, seed, sample_seed=None):
    """Inputs with correlated features of uneven size, as real activations have.

    `seed` fixes the distribution, `sample_seed` the samples drawn from it.
    """
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g) / k ** 0.5 + torch.eye(k)
    scale = torch.exp(torch.randn(k, generator=g))
    s = torch.Generator().manual_seed(seed + 1 if sample_seed is None else sample_seed)
    return (torch.randn(rows, k, generator=s) @ mix) * scale


def _layer(n=96, k=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * (1 + 3 * torch.rand(n, 1, generator=g))


def _hessian(x):
    acc = HessianAccumulator(x.shape[1])
    for chunk in x.split(300):
        acc.add(chunk)
    return acc.result()


@pytest.mark.parametrize("scale_rule", ["floor", "mse"])
def test_gptq_beats_rtn_on_held_out_inputs(scale_rule):
    w = _layer()
    calib = _correlated_inputs(2048, 256, 0, sample_seed=100)
    held_out = _correlated_inputs(1024, 256, 0, sample_seed=200)
    q_gptq = gptq_quantize(w, _hessian(calib), scale_rule=scale_rule)
    q_rtn = mxfp4.quantize(w, axis=1, scale_rule=scale_rule)
    ref = held_out @ w.T
    err_gptq = (held_out @ q_gptq.dequantize().T - ref).norm()
    err_rtn = (held_out @ q_rtn.dequantize().T - ref).norm()
    assert err_gptq < 0.85 * err_rtn, (err_gptq, err_rtn)
    # the weights themselves move further from W: GPTQ trades weight error for output error
    assert (q_gptq.dequantize() - w).norm() > (q_rtn.dequantize() - w).norm()


@pytest.mark.parametrize("scale_rule", ["floor", "ceil", "even", "mse"])
def test_gptq_without_feedback_is_rtn_bit_for_bit(scale_rule):
    w = _layer(n=40, k=128, seed=3)
    q = gptq_quantize(w, torch.eye(128), scale_rule=scale_rule, damp=0.0)
    assert q == mxfp4.quantize(w, axis=1, scale_rule=scale_rule)


def test_gptq_scales_come_from_the_corrected_block_before_rounding():
    w = _layer(n=16, k=64, seed=4)
    h = _hessian(_correlated_inputs(512, 64, 5))
    q = gptq_quantize(w, h)
    # first block: nothing has been pushed into it yet, so its scales are W's own
    first = scale_bytes(w[:, None, :32], "floor")[:, 0].to(torch.uint8)
    assert torch.equal(q.scales[:, 0], first)
    assert q.shape == (16, 64) and q.axis == 1 and q.scale_rule == "floor"
    assert torch.isfinite(q.dequantize()).all()


def test_dead_inputs_get_zero_weight_and_do_not_break_cholesky():
    w = _layer(n=8, k=64, seed=6)
    x = _correlated_inputs(256, 64, 7)
    x[:, 5] = 0
    q = gptq_quantize(w, _hessian(x))
    assert torch.all(q.dequantize()[:, 5] == 0)


def test_hessian_accumulator_is_mean_of_outer_products_and_rotates():
    x = torch.randn(100, 64)
    acc = HessianAccumulator(64)
    acc.add(x[:40])
    acc.add(x[40:].reshape(2, 30, 64))
    # float32 products, float64 sum
    torch.testing.assert_close(acc.result(), (2 * x.double().T @ x.double()) / 100, rtol=1e-5,
                               atol=1e-5)
    rot = HessianAccumulator(64, hadamard_size=32)
    rot.add(x)
    xr = rotate(x).double()
    torch.testing.assert_close(rot.result(), 2 * xr.T @ xr / 100, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="no calibration"):
        HessianAccumulator(8).result()


def test_bad_arguments():
    w = _layer(n=4, k=64)
    with pytest.raises(ValueError, match="multiple"):
        gptq_quantize(w[:, :48], torch.eye(48))
    with pytest.raises(ValueError, match="hessian"):
        gptq_quantize(w, torch.eye(32))
    with pytest.raises(ValueError, match="NaN"):
        gptq_quantize(w, torch.full((64, 64), float("nan")))
    with pytest.raises(ValueError, match="scale_rule"):
        gptq_quantize(w, torch.eye(64), scale_rule="max")
