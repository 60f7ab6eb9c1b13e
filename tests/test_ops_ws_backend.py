"""mxfp4.linear's backend="ws" (the warp-specialized GEMM, issue 24), backend="rs" (the
register-operand GEMM) and the auto rule, on the CPU: the GPU, the triton version and the kernels are stand-ins (the Gluon kernel runs only on
an sm_90 GPU; benchmarks/ws_gemm_device.py checks it there)."""

import warnings

import pytest
import torch

import mxfp4
from mxfp4 import ops
from mxfp4.kernels import linear as kl
from mxfp4.kernels import rs_gemm, ws_gemm
from mxfp4.layouts import prepack

K, N = 96, 64


class Spy:
    """Stands in for a kernel entry point: records its calls, returns a marked result."""

    def __init__(self, name):
        self.name, self.calls = name, []

    def __call__(self, x, w, bias=None):
        self.calls.append((x, w, bias))
        return torch.full((*x.shape[:-1], w.shape[0]), 7.0, dtype=x.dtype)


@pytest.fixture
def kernels(monkeypatch):
    """Spies on both kernels; the one-time warning not yet shown."""
    spies = Spy("ws"), Spy("v1")
    monkeypatch.setattr(ws_gemm, "ws_linear", spies[0])
    monkeypatch.setattr(kl, "linear", spies[1])
    monkeypatch.setattr(ops, "_WS_WARNED", [])
    return spies


def fake_gpu(monkeypatch, capability=(9, 0), version="3.6.0"):
    """CPU tensors pass for CUDA ones on a GPU of `capability` with triton `version`."""
    monkeypatch.setattr(ws_gemm, "_capability", lambda device: capability)
    monkeypatch.setattr(ws_gemm.triton, "__version__", version)
    monkeypatch.setattr(ops, "_use_triton", lambda backend, device: backend != "reference")


def _w(n=N, k=K, **kw):
    kw.setdefault("backend", "reference")  # CPU tensors, also on a machine with a GPU
    return mxfp4.quantize(torch.randn(n, k), **kw)


def _x(m=16, dtype=torch.bfloat16):
    return torch.randn(m, K).to(dtype)


def test_forced_rs_runs_the_kernel_on_a_hopper(monkeypatch, kernels):
    rs = Spy("rs")
    monkeypatch.setattr(rs_gemm, "rs_linear", rs)
    fake_gpu(monkeypatch)
    x, w, b = _x(32), _w(), torch.randn(N).to(torch.bfloat16)
    packed = prepack(w)
    y = mxfp4.linear(x, packed, b, backend="rs")
    assert rs.calls[0][0] is x and rs.calls[0][1] is packed and rs.calls[0][2] is b
    assert bool((y == 7).all())
    mxfp4.linear(x, w, backend="rs")  # a plain MXTensor is prepacked for the call
    assert torch.equal(rs.calls[1][1].codes, packed.codes)
    assert not kernels[0].calls and not kernels[1].calls
    with pytest.raises(ValueError, match="backend='rs' .*cannot run this call: .*float16"):
        mxfp4.linear(_x(dtype=torch.float16), packed, backend="rs")
    with pytest.raises(ValueError, match="'rs' is for mxfp4.linear only"):
        mxfp4.quantize(torch.zeros(2, 32), backend="rs")


def test_forced_rs_on_cpu_tensors_says_why(kernels):
    with pytest.raises(ValueError, match="register-operand GEMM.*needs CUDA tensors on an sm_90"):
        mxfp4.linear(_x(), prepack(_w()), backend="rs")


def test_ws_is_a_linear_backend_only():
    assert "ws" in ops.LINEAR_BACKENDS and "ws" not in ops.BACKENDS
    with pytest.raises(ValueError, match="'ws' is for mxfp4.linear only"):
        mxfp4.quantize(torch.zeros(2, 32), backend="ws")
    with pytest.raises(ValueError, match="'ws' is for mxfp4.linear only"):
        mxfp4.matmul(_w(), _w(), backend="ws")
    with pytest.raises(ValueError, match="backend must be one of"):
        mxfp4.linear(_x(), _w(), backend="gluon")


def test_forced_ws_runs_the_kernel_on_a_hopper(monkeypatch, kernels):
    ws, v1 = kernels
    fake_gpu(monkeypatch)
    x, w, b = _x(32), _w(), torch.randn(N).to(torch.bfloat16)
    y = mxfp4.linear(x, w, b, backend="ws")
    assert len(ws.calls) == 1 and not v1.calls
    assert ws.calls[0][0] is x and ws.calls[0][1] is w and ws.calls[0][2] is b
    assert y.shape == (32, N) and bool((y == 7).all())
    # below the auto rule's MIN_M rows, batched inputs, no bias, an empty batch: forced still runs
    for xi in (_x(1), torch.randn(2, 3, K).to(torch.bfloat16), _x(0)):
        mxfp4.linear(xi, w, backend="ws")
    assert len(ws.calls) == 4 and not v1.calls


@pytest.mark.parametrize("capability, version, words", [
    ((8, 0), "3.6.0", "sm_80"),
    ((10, 0), "3.6.0", "sm_100"),
    ((9, 0), "3.5.1", "written for triton 3.6.*found triton 3.5.1"),
])
def test_forced_ws_elsewhere_says_why(monkeypatch, kernels, capability, version, words):
    fake_gpu(monkeypatch, capability, version)
    with pytest.raises(ValueError, match=f"backend='ws' .*cannot run this call: .*{words}"):
        mxfp4.linear(_x(), _w(), backend="ws")
    assert not kernels[0].calls and not kernels[1].calls  # no silent fallback


def test_forced_ws_on_cpu_tensors_says_why(kernels):
    # real CPU tensors, interpreter or not: Gluon kernels have no interpreter
    with pytest.raises(ValueError, match="needs CUDA tensors on an sm_90"):
        mxfp4.linear(_x(), _w(), backend="ws")
    assert not kernels[0].calls and not kernels[1].calls


def test_forced_ws_rejects_what_the_kernel_cannot_read(monkeypatch, kernels):
    fake_gpu(monkeypatch)
    w = _w()
    with pytest.raises(ValueError, match="bfloat16 activations, got torch.float16"):
        mxfp4.linear(_x(dtype=torch.float16), w, backend="ws")
    with pytest.raises(ValueError, match="bfloat16 activations, got torch.float32"):
        mxfp4.linear(_x(dtype=torch.float32), w, backend="ws")
    with pytest.raises(ValueError, match="blocks of 32, the weight has blocks of 16"):
        mxfp4.linear(_x(), _w(block_size=16), backend="ws")
    with pytest.raises(ValueError, match="bfloat16 bias, got torch.float32"):
        mxfp4.linear(_x(), w, torch.zeros(N), backend="ws")
    with pytest.raises(ValueError, match="quantized along its last axis"):
        mxfp4.linear(_x(), _w(K, N, axis=0), backend="ws")
    with pytest.raises(ValueError, match="bias must be a tensor of shape"):
        mxfp4.linear(_x(), w, torch.zeros(N - 1, dtype=torch.bfloat16), backend="ws")
    assert not kernels[0].calls and not kernels[1].calls


def test_forced_ws_needs_one_device(monkeypatch, kernels):
    fake_gpu(monkeypatch)
    x, w = _x(), _w()
    # the meta device stands in for a second GPU
    w_other = type(w)(w.codes.to("meta"), w.scales.to("meta"), w.shape, w.axis, w.block_size)
    with pytest.raises(ValueError, match="must be on one device"):
        mxfp4.linear(x, w_other, backend="ws")
    assert not kernels[0].calls


def test_auto_never_runs_ws_while_it_is_off(monkeypatch, kernels):
    ws, v1 = kernels
    monkeypatch.setattr(ops, "GLUON_AUTO", ())
    fake_gpu(monkeypatch)  # everything the kernel wants: sm_90, triton 3.6, bf16, M >= 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in (1, 16, 256):
            mxfp4.linear(_x(m), _w())
    assert not ws.calls and len(v1.calls) == 3


def test_auto_would_run_ws_on_a_hopper_once_on(monkeypatch, kernels):
    ws, v1 = kernels
    monkeypatch.setattr(ops, "GLUON_AUTO", ((1, 1 << 30, "ws"),))
    fake_gpu(monkeypatch)
    w = _w()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mxfp4.linear(_x(16), w)
        mxfp4.linear(_x(64), w, torch.zeros(N, dtype=torch.bfloat16))
        mxfp4.linear(_x(64), prepack(w))  # the HopperWeight form too
        assert len(ws.calls) == 3 and not v1.calls
        # the rule's other cases stay on v1, with no warning: few rows, fp16, a float32 bias
        mxfp4.linear(_x(ws_gemm.MIN_M - 1), w)
        mxfp4.linear(_x(64, torch.float16), w)
        mxfp4.linear(_x(64), w, torch.zeros(N))
    assert len(ws.calls) == 3 and len(v1.calls) == 3
    mxfp4.linear(_x(64), w, backend="triton")  # forcing v1 still works
    assert len(ws.calls) == 3 and len(v1.calls) == 4


def test_auto_follows_the_table_by_rows(monkeypatch, kernels):
    """GLUON_AUTO rows pick by the number of rows of x; "rs" only for a HopperWeight."""
    ws, v1 = kernels
    rs = Spy("rs")
    monkeypatch.setattr(rs_gemm, "rs_linear", rs)
    monkeypatch.setattr(ops, "GLUON_AUTO", ((16, 64, "rs"), (65, 2048, "ws")))
    fake_gpu(monkeypatch)
    w = _w()
    packed = prepack(w)
    mxfp4.linear(_x(16), packed)
    mxfp4.linear(_x(64), packed)
    assert len(rs.calls) == 2 and not ws.calls and not v1.calls
    mxfp4.linear(_x(64), w)  # a plain MXTensor: not prepacked every call, v1
    mxfp4.linear(_x(65), w)
    mxfp4.linear(_x(2049), packed)  # no row: v1
    mxfp4.linear(_x(8), packed)
    assert len(rs.calls) == 2 and len(ws.calls) == 1 and len(v1.calls) == 3


def test_the_shipped_table_keeps_v1_on_a_hopper(monkeypatch, kernels):
    """GLUON_AUTO ships empty (docs/kernels.md, fifth session: a Gluon launch's host time loses
    eager calls, and a graph-only pick would load the kernel during capture): auto runs v1 at
    every M, silently, even on a HopperWeight; backend="rs" still runs the Gluon GEMM."""
    ws, v1 = kernels
    rs = Spy("rs")
    monkeypatch.setattr(rs_gemm, "rs_linear", rs)
    fake_gpu(monkeypatch)
    packed = prepack(_w())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in (16, 100, 256, 4096):
            mxfp4.linear(_x(m), packed)
    assert not rs.calls and not ws.calls and len(v1.calls) == 4
    mxfp4.linear(_x(64), packed, backend="rs")
    assert len(rs.calls) == 1


def test_forced_ws_reads_the_hopper_layout_too(monkeypatch, kernels):
    fake_gpu(monkeypatch)
    packed = prepack(_w())
    mxfp4.linear(_x(), packed, backend="ws")
    assert kernels[0].calls[0][1] is packed and not kernels[1].calls


@pytest.mark.parametrize("capability, version, words", [
    ((8, 0), "3.6.0", "sm_80"),
    ((9, 0), "3.7.0", "found triton 3.7.0"),
])
def test_auto_warns_once_elsewhere_and_keeps_v1(monkeypatch, kernels, capability, version, words):
    ws, v1 = kernels
    monkeypatch.setattr(ops, "GLUON_AUTO", ((1, 1 << 30, "ws"),))
    fake_gpu(monkeypatch, capability, version)
    with pytest.warns(UserWarning, match=f"Gluon GEMMs are not used because .*{words}"):
        mxfp4.linear(_x(64), _w())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # shown once only
        mxfp4.linear(_x(64), _w())
        mxfp4.linear(_x(16), _w())
    assert not ws.calls and len(v1.calls) == 3  # the Triton kernels, never the reference


def test_auto_on_cpu_tensors_keeps_the_reference(monkeypatch, kernels):
    monkeypatch.setattr(ops, "GLUON_AUTO", ((1, 1 << 30, "ws"),))
    x, w = _x(), _w()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = mxfp4.linear(x, w)
    assert not kernels[0].calls and not kernels[1].calls
    ref = x.float() @ w.dequantize().T
    assert ((y.float() - ref).norm() / ref.norm()).item() < 1e-2
