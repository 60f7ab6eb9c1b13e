"""On an H100: MXLinear takes the kernel layout (HopperWeight) by itself when moved to CUDA.

Run: PYTHONPATH=src python3 benchmarks/mxlinear_layout_device.py

For the GPT-OSS shapes (qkv 2880->5120, out 4096->2880, unembedding 2880->201088) it builds each
layer on the CPU (portable layout), moves it with .cuda() and checks, before timing anything:
  - the layer holds only the packed layout (buffers, and the GPU memory the move added);
  - its state_dict has the CPU one's keys, shapes and bytes, and .cpu() gives them back;
  - its outputs at M = 1, 8, 64 (bf16) equal mxfp4.linear on its own prepacked weight bit for
    bit, and the portable path (mxfp4.linear on weight_mx, the plain-layout kernel): the number
    of differing elements is printed (the two kernels may sum K in another order) and both
    must be as close to float64 math.
Then it times the forward, packed vs the same layer unpack()ed (plain layout), each M, with
CUDA graphs of calls cycling over copies past L2 (median of replays, mxfp4.bench.kernels).
"""

from __future__ import annotations

import copy

import torch

import mxfp4
from mxfp4.bench.kernels import graph_times_us
from mxfp4.layouts import HopperWeight, prepack
from mxfp4.nn import MXLinear

SHAPES = [("qkv", 2880, 5120), ("out", 4096, 2880), ("unemb", 2880, 201088)]  # (name, K, N)
MS = (1, 8, 64)
ROTATE_BYTES = 200e6  # L2 is 50 MB


def cpu_layer(k: int, n: int, seed: int) -> MXLinear:
    g = torch.Generator(device="cuda").manual_seed(seed)
    w = torch.randn(n, k, generator=g, device="cuda") * k ** -0.5
    mx = mxfp4.quantize(w, scale_rule="even").cpu()  # quantized on the GPU, kept on the CPU
    bias = (torch.randn(n, generator=g, device="cuda") * 0.02).bfloat16().cpu()
    return MXLinear(mx, bias)


def rel_err(y, ref) -> float:
    return ((y.double() - ref).norm() / ref.norm()).item()


def check(name: str, layer: MXLinear) -> MXLinear:
    """Move `layer` to CUDA and check it; returns the CUDA layer."""
    state = {key: t.clone() for key, t in layer.state_dict().items()}
    assert not layer.packed
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    layer.cuda()
    torch.cuda.synchronize()
    added = torch.cuda.memory_allocated() - before
    assert layer.packed and isinstance(layer.kernel_weight, HopperWeight)
    assert set(dict(layer.named_buffers())) == {"packed_codes", "packed_scales"}
    held = layer.kernel_weight.nbytes + layer.bias.nbytes
    assert added <= held + (4 << 20), f"{name}: the move added {added} bytes, the layer holds {held}"
    cuda_state = layer.state_dict()
    assert list(cuda_state) == list(state)
    for key, t in state.items():
        assert cuda_state[key].is_cuda and torch.equal(cuda_state[key].cpu(), t), f"{name} {key}"
    back = copy.deepcopy(layer).cpu()
    assert not back.packed and all(torch.equal(back.state_dict()[key], t) for key, t in state.items())
    del back, cuda_state
    w, b = layer.weight_mx, layer.bias
    for m in MS:
        x = torch.randn(m, w.shape[1], device="cuda").bfloat16()
        y = layer(x)
        assert torch.equal(y, mxfp4.linear(x, prepack(w), b)), f"{name} M={m}: not the packed path"
        plain = mxfp4.linear(x, w, b)
        ref = x.double() @ w.dequantize().double().T + b.double()
        e_y, e_plain = rel_err(y, ref), rel_err(plain, ref)
        assert e_y <= 1.05 * e_plain + 1e-4, f"{name} M={m}: rel err {e_y:.2e} vs plain {e_plain:.2e}"
        print(f"check {name} M={m}: packed == prepack path; vs plain kernel "
              f"{int((y != plain).sum())} of {y.numel()} differ; rel err {e_y:.2e} (plain {e_plain:.2e})")
    return layer


def main() -> None:
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows = []
    for i, (name, k, n) in enumerate(SHAPES):
        layer = check(name, cpu_layer(k, n, seed=i))
        copies = max(2, int(ROTATE_BYTES // layer.kernel_weight.nbytes) + 1)
        packed = [layer] + [copy.deepcopy(layer) for _ in range(copies - 1)]
        plain = [copy.deepcopy(layer).unpack() for _ in range(copies)]
        assert not any(p.packed for p in plain)
        for m in MS:
            x = torch.randn(m, k, device="cuda").bfloat16()
            t_packed, t_plain = graph_times_us([[lambda p=p: p(x) for p in packed],
                                                [lambda p=p: p(x) for p in plain]])
            mb = layer.kernel_weight.nbytes / 1e6
            rows.append((f"{name} {k}->{n}", m, t_packed, t_plain, mb / t_packed))
        del packed, plain, layer
        torch.cuda.empty_cache()
    print(f"\n{'shape':<20} {'M':>3} {'packed us':>10} {'plain us':>10} {'speedup':>8} {'packed TB/s':>12}")
    for shape, m, tp, tl, tbs in rows:
        print(f"{shape:<20} {m:>3} {tp:>10.1f} {tl:>10.1f} {tl / tp:>7.2f}x {tbs:>12.2f}")


if __name__ == "__main__":
    main()
