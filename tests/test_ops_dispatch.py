"""mxfp4.ops dispatch: CUDA tensors take the kernels, CPU tensors the reference; backend= forces
either; bad inputs give clear errors."""

import pytest
import torch

import mxfp4
from mxfp4 import ops
from mxfp4.kernels import linear as kl
from mxfp4.kernels import mx_matmul as km
from mxfp4.kernels import quantize as kq
from mxfp4.layouts import prepack


def _boom(*args, **kwargs):
    raise AssertionError("the kernel was called")


def test_backends_listed():
    assert ops.BACKENDS == ("auto", "triton", "reference")
    with pytest.raises(ValueError, match="backend must be one of"):
        mxfp4.linear(torch.zeros(1, 32), mxfp4.quantize(torch.zeros(2, 32)), backend="cuda")


def test_choice_by_device(monkeypatch):
    assert ops._use_triton("auto", torch.device("cuda")) is True
    assert ops._use_triton("auto", torch.device("cpu")) is False
    assert ops._use_triton("reference", torch.device("cuda")) is False
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert ops._use_triton("triton", torch.device("cpu")) is True
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        ops._use_triton("triton", torch.device("cpu"))


def test_cpu_auto_runs_the_reference(monkeypatch):
    for mod, name in ((kq, "quantize"), (kq, "dequantize"), (kl, "linear"), (km, "matmul")):
        monkeypatch.setattr(mod, name, _boom)
    x = torch.randn(4, 64)
    q = mxfp4.quantize(x)
    mxfp4.dequantize(q)
    mxfp4.linear(x, q)
    mxfp4.linear(x, prepack(q))
    mxfp4.matmul(q, q)
    if ops._interpreting():  # CPU tensors may take the kernels only in the interpreter
        with pytest.raises(AssertionError, match="kernel was called"):
            mxfp4.quantize(x, backend="triton")
    else:
        with pytest.raises(ValueError, match="needs CUDA tensors"):
            mxfp4.quantize(x, backend="triton")


def test_auto_takes_the_kernels_for_cuda_tensors(monkeypatch):
    # with a GPU: real CUDA tensors; without one, the same spy on the device decision
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.randn(4, 64, device=dev)
    q = mxfp4.quantize(x)
    if dev.type == "cpu":
        monkeypatch.setattr(ops, "_use_triton", lambda backend, device: backend != "reference")
    for mod, name in ((kq, "quantize"), (kq, "dequantize"), (kl, "linear"), (km, "matmul")):
        monkeypatch.setattr(mod, name, _boom)
    for call in (lambda: mxfp4.quantize(x), lambda: mxfp4.dequantize(q),
                 lambda: mxfp4.linear(x, q), lambda: mxfp4.matmul(q, q)):
        with pytest.raises(AssertionError, match="kernel was called"):
            call()


def test_triton_on_cpu_matches_reference():
    # under the interpreter (conftest sets it without a GPU) or on CUDA tensors with one
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.randn(5, 96)
    q = mxfp4.quantize(x.to(dev), backend="triton")
    assert q.cpu() == mxfp4.quantize(x, backend="reference")
    w = mxfp4.quantize(torch.randn(40, 96))
    y = mxfp4.linear(x.to(dev), w.to(dev), backend="triton").cpu()
    ref = mxfp4.linear(x, w, backend="reference")
    assert ((y - ref).norm() / ref.norm()).item() < 1e-4  # fp32 x: two bf16 terms


def test_linear_errors():
    w = mxfp4.quantize(torch.randn(8, 64))
    for backend in ("auto", "reference", "triton"):
        with pytest.raises(TypeError, match="bfloat16, float16 or float32"):
            mxfp4.linear(torch.zeros(2, 64, dtype=torch.int32), w, backend=backend)
        with pytest.raises(ValueError, match="does not match the weight's"):
            mxfp4.linear(torch.zeros(2, 32), w, backend=backend)
        with pytest.raises(TypeError, match="must be an MXTensor"):
            mxfp4.linear(torch.zeros(2, 64), torch.zeros(8, 64), backend=backend)
        with pytest.raises(ValueError, match="bias must be a tensor of shape"):
            mxfp4.linear(torch.zeros(2, 64), w, torch.zeros(7), backend=backend)
        with pytest.raises(TypeError, match="expects a torch.Tensor input"):
            mxfp4.linear([1.0], w, backend=backend)
    odd = mxfp4.quantize(torch.randn(8, 48))  # K = 48 with blocks of 32: padded storage
    with pytest.raises(ValueError, match="not a multiple of its block size"):
        mxfp4.linear(torch.zeros(2, 48), odd, backend="triton")
    col = mxfp4.quantize(torch.randn(64, 8), axis=0)
    with pytest.raises(ValueError, match="quantized along its last axis"):
        mxfp4.linear(torch.zeros(2, 64), col, backend="triton")


def test_matmul_quantize_dequantize_errors():
    a = mxfp4.quantize(torch.randn(4, 64))
    b = mxfp4.quantize(torch.randn(4, 96))
    with pytest.raises(ValueError, match="must share K"):
        mxfp4.matmul(a, b, backend="triton")
    with pytest.raises(TypeError, match="must be an MXTensor"):
        mxfp4.matmul(a, torch.zeros(4, 64), backend="triton")
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        mxfp4.quantize(torch.zeros(4, 32, dtype=torch.int8), backend="triton")
    with pytest.raises(TypeError, match="expects an MXTensor"):
        mxfp4.dequantize(torch.zeros(4), backend="triton")
    with pytest.raises(TypeError, match="dequantize produces"):
        mxfp4.dequantize(a, torch.int8, backend="triton")
