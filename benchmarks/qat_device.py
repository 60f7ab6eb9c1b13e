"""On a GPU: quantization-aware training (mxfp4.train) checked, then timed.

Checks first: fake_quantize on CUDA (the Triton quantize + dequantize kernels) equals the CPU
codec for every scale rule, in float32 and bf16; a bf16 QATLinear's forward equals F.linear on
the rounded weight; its converted MXLinear (the W4A16 kernel) lands within bf16 rounding of it.
Then times one training step (forward + backward) of a Llama-style MLP stack in bf16, plain
nn.Linear against QATLinear, with the fake-quantization time alone beside it (median ms).
Run: PYTHONPATH=src python benchmarks/qat_device.py
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mxfp4.codec import SCALE_RULES
from mxfp4.train import QATLinear, convert, fake_quantize, prepare_qat

DEV = "cuda"
HIDDEN, FFN, LAYERS, TOKENS = 1024, 4096, 4, 8192


def median_ms(fn, reps=20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def check_fake_quantize():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        w = (torch.randn(512, 1024, generator=g) * torch.rand(512, 1, generator=g) * 4).to(dtype)
        for rule in SCALE_RULES:
            cpu = fake_quantize(w, axis=1, scale_rule=rule)
            gpu = fake_quantize(w.to(DEV), axis=1, scale_rule=rule).cpu()
            assert torch.equal(cpu, gpu), (dtype, rule)
    print("fake_quantize: CUDA kernels == CPU codec (float32, bf16; floor, ceil, even, mse)")


def check_layer():
    torch.manual_seed(0)
    layer = QATLinear.from_linear(nn.Linear(HIDDEN, FFN, dtype=torch.bfloat16, device=DEV))
    x = torch.randn(256, HIDDEN, device=DEV, dtype=torch.bfloat16)
    with torch.no_grad():
        y = layer(x)
        want = F.linear(x, fake_quantize(layer.weight, axis=1).bfloat16(), layer.bias)
        assert torch.equal(y, want)
        mx = layer.to_mx()(x)
    rel = float((mx.float() - y.float()).norm() / y.float().norm())
    assert rel < 1e-2, rel
    print(f"QATLinear bf16 == F.linear on the rounded weight; converted MXLinear kernel: "
          f"relative difference {rel:.2e}")


def mlp_stack() -> nn.Module:
    torch.manual_seed(0)
    layers = []
    for _ in range(LAYERS):
        layers += [nn.Linear(HIDDEN, FFN, bias=False), nn.GELU(), nn.Linear(FFN, HIDDEN, bias=False)]
    return nn.Sequential(*layers).to(DEV, torch.bfloat16)


def time_step():
    plain = mlp_stack()
    qat = copy.deepcopy(plain)
    prepare_qat(qat)
    x = torch.randn(TOKENS, HIDDEN, device=DEV, dtype=torch.bfloat16)

    def step(model):
        def run():
            model.zero_grad(set_to_none=True)
            model(x).float().square().mean().backward()
        return run

    weights = [m.weight for m in qat.modules() if isinstance(m, QATLinear)]
    fq = median_ms(lambda: [fake_quantize(w, axis=1) for w in weights])
    t_plain, t_qat = median_ms(step(plain)), median_ms(step(qat))
    print(f"\n{LAYERS} x MLP {HIDDEN}->{FFN}->{HIDDEN}, {TOKENS} tokens, bf16, one training step")
    print(f"{'nn.Linear':<28}{t_plain:>9.2f} ms")
    print(f"{'QATLinear':<28}{t_qat:>9.2f} ms  ({t_qat / t_plain:.2f}x)")
    print(f"{'  of which fake quantize':<28}{fq:>9.2f} ms")
    convert(qat)  # the deployable model builds on the GPU too


if __name__ == "__main__":
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    check_fake_quantize()
    check_layer()
    time_step()
