"""The E2M1 and E8M0 definitions."""

import pytest
import torch

from mxfp4 import format as fmt


def test_value_table_and_fields():
    assert fmt.E2M1_VALUES[:8] == (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    assert all(fmt.E2M1_VALUES[c + 8] == -fmt.E2M1_VALUES[c] for c in range(8))
    neg_zero = fmt.E2M1_CODES[0x8]
    assert neg_zero.value == 0.0 and str(neg_zero.value) == "-0.0" and neg_zero.sign == 1
    six = fmt.e2m1_code(0b0111)
    assert (six.sign, six.exponent, six.mantissa, six.bits) == (0, 3, 1, "0111")
    assert fmt.e2m1_code(0b0001).subnormal and fmt.e2m1_code(0b0001).value == 0.5
    with pytest.raises(ValueError):
        fmt.e2m1_code(16)


def test_e8m0():
    assert fmt.e8m0_value(127) == 1.0 and fmt.e8m0_value(0) == 2.0 ** -127
    assert fmt.e8m0_value(254) == 2.0 ** 127
    assert fmt.e8m0_value(255) != fmt.e8m0_value(255)  # NaN
    bytes_ = torch.arange(256, dtype=torch.uint8)
    decoded = fmt.e8m0_to_float32(bytes_)
    assert torch.isnan(decoded[255])
    assert torch.equal(decoded[:255].double(), 2.0 ** (torch.arange(255, dtype=torch.float64) - 127))
    with pytest.raises(ValueError):
        fmt.e8m0_value(256)


def test_rne_boundaries_are_midpoints_or_just_below():
    b = fmt.RNE_BOUNDARIES
    assert b[0] == 0.25 and b[2] == 1.25 and b[4] == 2.5 and b[6] == 5.0
    for i, mid in ((1, 0.75), (3, 1.75), (5, 3.5)):
        assert b[i] < mid and torch.nextafter(torch.tensor(b[i]), torch.tensor(8.0)).item() == mid
