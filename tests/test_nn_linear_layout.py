"""MXLinear's two weight layouts: the portable MXTensor one and the kernel layout (HopperWeight).

On CUDA the layer holds the kernel layout by itself; the CPU has no CUDA, so these tests use the
explicit switch (prepack / unpack) and patch the device rule (`_packs_on`) to run the automatic
path. The kernels run here in the Triton interpreter (tests/conftest.py).
"""

import copy
import json
import os

import pytest
import torch
from torch import nn

import mxfp4
from mx_tiny_models import tiny_gemma3, tiny_tokens
from mxfp4.io.checkpoint import CONFIG_NAME, load_quantized, module_record, save_quantized
from mxfp4.layouts import HopperWeight, prepack
from mxfp4.nn import MXLinear, quantize_model
from mxfp4.nn import linear as nn_linear
from mxfp4.tensor import MXTensor

KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: the Triton interpreter


def _layer(n=70, k=96, bias=True, seed=0, hadamard=False, scale_rule="floor"):
    """N and K off the kernel layout's grid (rows padded to 128, K to 64), so padding is exercised."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * (1 + 4 * torch.rand(n, 1, generator=g))
    b = torch.randn(n, generator=g) if bias else None
    mx = nn_linear.quantize_weight(w, scale_rule=scale_rule, hadamard=hadamard)
    return MXLinear(mx, b, hadamard=hadamard)


def _random_bytes(n, k, seed=0):
    """Every code and every scale byte, NaN blocks (255) included: the layouts must not care."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 256, (n, k // 2), generator=g, dtype=torch.uint8)
    scales = torch.randint(0, 256, (n, k // 32), generator=g, dtype=torch.uint8)
    return MXTensor(codes, scales, (n, k), axis=1)


def _same_state(a: dict, b: dict):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


@pytest.fixture
def cuda_rule_on_cpu(monkeypatch):
    """The CPU counts as a device that packs on arrival, as CUDA does."""
    monkeypatch.setattr(nn_linear, "_packs_on", lambda device: device.type in ("cuda", "cpu"))


# -- state_dict and the switch -------------------------------------------------------------

def test_state_dict_is_portable_and_byte_identical_when_packed():
    m = _layer()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert list(before) == ["bias", "weight_codes", "weight_scales"] and not m.packed
    assert m.prepack() is m and m.packed
    _same_state(m.state_dict(), before)
    held = dict(m.named_buffers())
    assert set(held) == {"packed_codes", "packed_scales"}  # only the packed layout is held
    assert held["packed_codes"].shape == (128, 64) and held["packed_scales"].shape == (4, 128)
    assert isinstance(m.kernel_weight, HopperWeight)
    # every reader of the portable names still gets the portable tensors
    assert torch.equal(m.weight_codes, before["weight_codes"])
    assert torch.equal(m.weight_scales, before["weight_scales"])
    assert m.weight_mx == MXTensor(before["weight_codes"], before["weight_scales"], (70, 96), axis=1)
    assert "packed=True" in repr(m)
    assert module_record(m)["shape"] == [70, 96]


@pytest.mark.parametrize("n,k", [(70, 96), (128, 64), (3, 160)])
def test_portable_packed_portable_is_lossless(n, k):
    mx = _random_bytes(n, k, seed=n)
    m = MXLinear(mx.to("cpu"), None)
    codes, scales = mx.codes.clone(), mx.scales.clone()
    m.prepack()
    assert m.packed and m.kernel_weight.max_scale == int(scales.max())
    assert m.prepack().packed  # twice is once
    m.unpack()
    assert not m.packed and set(dict(m.named_buffers())) == {"weight_codes", "weight_scales"}
    assert torch.equal(m.weight_codes, codes) and torch.equal(m.weight_scales, scales)
    assert m.unpack() is m and not m.packed


def test_dequantized_weight_and_deepcopy_follow_the_packed_layer():
    m = _layer(hadamard=True)
    ref = m.dequantized_weight()
    m.prepack()
    assert torch.equal(m.dequantized_weight(), ref)
    twin = copy.deepcopy(m)
    assert twin.packed
    _same_state(twin.state_dict(), m.state_dict())


def test_other_block_sizes_stay_portable(cuda_rule_on_cpu):
    mx = mxfp4.quantize(torch.randn(8, 64), block_size=16)
    m = MXLinear(mx)
    assert not m.packed  # the kernel layout needs blocks of 32; the plain kernel takes any
    with pytest.raises(ValueError, match="needs blocks of 32"):
        m.prepack()


# -- the automatic rule (device changes), run on the CPU with the rule patched -------------

def test_construction_on_a_packing_device_packs(cuda_rule_on_cpu):
    mx = _random_bytes(70, 96)
    assert MXLinear(mx).packed
    shared = MXLinear(mx, packed=False)  # a tied head keeps the given tensors
    assert not shared.packed and shared.weight_codes is mx.codes
    assert MXLinear.from_linear(nn.Linear(64, 8)).packed


def test_layout_follows_the_device(cuda_rule_on_cpu):
    m = _layer()
    ref = {k: v.clone() for k, v in m.state_dict().items()}
    m.prepack()
    m.to(torch.bfloat16)  # a dtype change is no move: the layout stays, the codes stay uint8
    assert m.packed and m.bias.dtype == torch.bfloat16
    m.to("meta")  # off a packing device: portable
    assert not m.packed and m.weight_codes.device.type == "meta"
    m.to_empty(device="cpu")  # arriving on a packing device: packed once, here
    assert m.packed and m.packed_codes.device.type == "cpu"
    m.load_state_dict(ref)  # to_empty left garbage: the portable state_dict fills the packed layer
    assert m.packed
    for key in ("weight_codes", "weight_scales"):
        assert torch.equal(m.state_dict()[key], ref[key])


# -- forward: both layouts give the same outputs -------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_reference_is_bit_identical_between_layouts(dtype):
    m = _layer(hadamard=True).to(dtype)
    x = torch.randn(2, 3, 96).to(dtype)
    portable = m(x)
    assert torch.equal(m.prepack()(x), portable)


@pytest.mark.parametrize("rows", [1, 5])
def test_forward_kernel_is_bit_identical_between_layouts(rows):
    m = _layer().to(torch.bfloat16).to(KERNEL_DEVICE).unpack()  # portable, where the kernel runs
    x = torch.randn(rows, 96).to(torch.bfloat16).to(KERNEL_DEVICE)
    portable = m(x, backend="triton")
    packed = m.prepack()(x, backend="triton")
    assert torch.equal(packed, portable)
    ref = mxfp4.linear(x, m.weight_mx, m.bias, backend="reference")
    assert ((packed.float() - ref.float()).norm() / ref.float().norm()) < 1e-2


def test_forward_packed_runs_the_kernel_on_the_packed_weight():
    # fp32 x takes another kernel per layout; the packed layer must give exactly what
    # mxfp4.linear gives on its own prepacked weight
    m = _layer(bias=False).to(KERNEL_DEVICE).unpack()
    x = torch.randn(3, 96, device=KERNEL_DEVICE)
    want = mxfp4.linear(x, prepack(m.weight_mx), backend="triton")
    assert torch.equal(m.prepack()(x, backend="triton"), want)


# -- load_state_dict -----------------------------------------------------------------------

@pytest.mark.parametrize("assign", [False, True])
def test_load_state_dict_into_a_packed_layer(assign):
    src, dst = _layer(seed=1), _layer(seed=2).prepack()
    held = dst.packed_codes
    dst.load_state_dict(src.state_dict(), assign=assign)
    assert dst.packed and (dst.packed_codes is held) != assign  # copied in place unless assign
    _same_state(dst.state_dict(), src.state_dict())
    x = torch.randn(4, 96)
    assert torch.equal(dst(x), src(x))
    src.prepack()  # a packed layer's state_dict loads into a portable one too
    fresh = _layer(seed=3)
    fresh.load_state_dict(src.state_dict())
    assert not fresh.packed
    _same_state(fresh.state_dict(), src.state_dict())


def test_load_state_dict_updates_the_scale_bound():
    small = _random_bytes(70, 96, seed=1)
    small.scales.clamp_(max=120)  # every |W| <= 12: the kernel's fused decode applies
    dst = MXLinear(small, torch.zeros(70)).prepack()
    assert dst.kernel_weight.max_scale == 120
    src = MXLinear(_random_bytes(70, 96), torch.zeros(70))
    dst.load_state_dict(src.state_dict())
    assert dst.kernel_weight.max_scale == int(src.weight_scales.max())


@pytest.mark.parametrize("key, bad, match", [
    ("weight_codes", torch.zeros(70, 40, dtype=torch.uint8),
     r"weight_codes: expected a uint8 tensor of shape \(70, 48\)"),
    ("weight_scales", torch.zeros(3, 70, dtype=torch.uint8),
     r"weight_scales: expected a uint8 tensor of shape \(70, 3\)"),
    ("weight_codes", torch.zeros(70, 48), "got torch.float32 of shape"),
])
def test_load_state_dict_bad_tensors_are_refused_clearly(key, bad, match):
    m = _layer().prepack()
    state = {**m.state_dict(), key: bad}
    with pytest.raises(RuntimeError, match=match):
        m.load_state_dict(state)
    portable = _layer()
    if bad.dtype == torch.uint8:  # torch's own check, on the portable layout
        with pytest.raises(RuntimeError, match=f"size mismatch for {key}"):
            portable.load_state_dict(state)


def test_load_state_dict_missing_and_unexpected_keys():
    m = _layer().prepack()
    state = m.state_dict()
    del state["weight_scales"]
    with pytest.raises(RuntimeError, match="Missing key.*weight_scales"):
        m.load_state_dict(state)
    result = m.load_state_dict({**state, "extra": torch.zeros(1)}, strict=False)
    assert result.missing_keys == ["weight_scales"] and result.unexpected_keys == ["extra"]
    outer = nn.Sequential(m)
    result = outer.load_state_dict({f"0.{k}": v for k, v in m.state_dict().items()})
    assert not result.missing_keys and not result.unexpected_keys


# -- whole models: quantize_model, save_quantized, load_quantized ------------------------------

def _files(path):
    with open(os.path.join(path, CONFIG_NAME)) as f:
        config = json.load(f)
    return config, {n: open(os.path.join(path, n), "rb").read() for n in config["files"]}


def test_saved_checkpoint_of_a_packed_model_is_the_portable_one(tmp_path):
    model = tiny_gemma3()
    quantize_model(model)
    layers = [m for m in model.modules() if isinstance(m, MXLinear)]
    assert layers
    with torch.no_grad():
        logits = model(tiny_tokens()).logits
    save_quantized(model, tmp_path / "portable")
    for m in layers:
        m.prepack()
    with torch.no_grad():  # the reference path: bit-identical between layouts
        assert torch.equal(model(tiny_tokens()).logits, logits)
    save_quantized(model, tmp_path / "packed")
    assert _files(tmp_path / "packed") == _files(tmp_path / "portable")
    again = load_quantized(tmp_path / "packed")
    assert not any(m.packed for m in again.modules() if isinstance(m, MXLinear))
    _same_state(again.state_dict(), model.state_dict())
