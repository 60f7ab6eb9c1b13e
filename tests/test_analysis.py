"""error_stats: MSE, QSNR, max error, bias, saturation and the scale histogram."""

import math

import torch

import mxfp4


def test_stats_on_a_hand_checked_block():
    x = torch.tensor([2.5, -1.25, 0.75, 4.0])  # seed example: 2, -1, 1, 4 at scale 1
    s = mxfp4.error_stats(x, block_size=4)
    errs = torch.tensor([-0.5, 0.25, 0.25, 0.0], dtype=torch.float64)
    assert s.numel == 4
    assert math.isclose(s.mse, float((errs ** 2).mean()))
    assert math.isclose(s.qsnr_db, 10 * math.log10(float((x.double() ** 2).sum() / (errs ** 2).sum())))
    assert s.max_abs_error == 0.5 and math.isclose(s.mean_error, 0.0, abs_tol=1e-12)
    assert s.saturated_fraction == 0.0
    assert s.scale_exponents == {0: 1}


def test_saturation_and_histogram():
    x = torch.tensor([7.0] + [1.0] * 31 + [0.09] * 32)  # 7 > 6 * 2^0 at the floor scale 1
    s = mxfp4.error_stats(x)
    assert s.saturated_fraction == 1 / 64
    assert s.scale_exponents == {0: 1, -6: 1}
    assert mxfp4.error_stats(x, scale_rule="ceil").saturated_fraction == 0.0


def test_exact_input_has_infinite_qsnr_and_nan_blocks_are_counted():
    x = torch.tensor([1.0, 2.0, 4.0, 6.0] * 8)
    assert mxfp4.error_stats(x).qsnr_db == math.inf
    y = torch.randn(64)
    y[3] = float("nan")
    s = mxfp4.error_stats(y)
    assert s.scale_exponents[None] == 1


def test_bias_is_the_mean_signed_error():
    x = torch.full((32,), 1.2)  # scale 2^-2: 4.8 rounds down to 4, so x̂ = 1.0 everywhere
    s = mxfp4.error_stats(x)
    assert math.isclose(s.mean_error, 1.0 - float(torch.tensor(1.2).double()))
    assert s.as_dict()["numel"] == 32
