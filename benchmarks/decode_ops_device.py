"""On a GPU: the fused decode kernels of kernels/decode_ops.py against their eager torch twins.

At gpt-oss sizes (hidden 2880; 64 query heads, 8 kv heads, head_dim 64) and batch 1, 8, 64,
256: checks add_rmsnorm and rope_kv_write against the twins (h, v, positions bit-identical;
y, q, k within one bf16 ulp, counting the elements that differ), checks rope_kv_write replayed
in a CUDA graph that advances the slot on the device, then times both in CUDA graphs of many
calls (median µs per call).
Run: PYTHONPATH=src python benchmarks/decode_ops_device.py
"""

import torch

from mxfp4.bench.kernels import graph_times_us
from mxfp4.kernels import decode_ops as ops
from mxfp4.models.rope import yarn_inv_freq

HIDDEN, HEADS, KV, D, CACHE = 2880, 64, 8, 64, 1024
BATCHES = [1, 8, 64, 256]


def ulps(a, b) -> int:
    i, j = (t.contiguous().view(torch.int16).long() for t in (a, b))
    order = [torch.where(t < 0, -(t & 0x7FFF), t) for t in (i, j)]
    return int((order[0] - order[1]).abs().max())


def close(a, b, what):
    """Largest distance in bf16 ulps (at most 1) and the count of elements that differ."""
    n, u = int((a != b).sum()), ulps(a, b)
    assert u <= 1, f"{what}: {u} ulps apart"
    return f"{n}/{a.numel()}"


def row(op, b, fused, twin, diff):
    print(f"{op:<14}{b:>5}{fused:>10.2f}{twin:>10.2f}{twin / fused:>8.1f}x  {diff}")


def rope_inputs(b, dev, g):
    inv_freq, conc = yarn_inv_freq(D, 150000.0, 32.0, 1.0, 32.0, 4096, device=dev)
    qkv = torch.randn(b, (HEADS + 2 * KV) * D, generator=g, device=dev).to(torch.bfloat16)
    pos = torch.randint(0, 100000, (b,), generator=g, device=dev)
    caches = (torch.zeros(b, KV, CACHE, D, dtype=torch.bfloat16, device=dev),
              torch.zeros(b, KV, CACHE, D, dtype=torch.bfloat16, device=dev),
              torch.full((b, CACHE), -1, dtype=torch.long, device=dev))
    return qkv, pos, inv_freq, conc, caches


def check_graph_slot(dev, g):
    """rope_kv_write in a graph whose replays advance the slot on the device (ring of 128)."""
    qkv, pos, inv_freq, conc, _ = rope_inputs(4, dev, g)
    ring = [torch.zeros(4, KV, 128, D, dtype=torch.bfloat16, device=dev) for _ in range(2)]
    ring.append(torch.full((4, 128), -1, dtype=torch.long, device=dev))
    ref = [c.clone() for c in ring]
    slot = torch.tensor([126], device=dev)
    args = (inv_freq, conc, *ring, HEADS, KV, D)
    ops.rope_kv_write(qkv, pos, slot, *args)  # compile outside the capture
    slot.fill_(126)
    for c, empty in zip(ring, (0, 0, -1)):
        c.fill_(empty)
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        q = ops.rope_kv_write(qkv, pos, slot, *args)
        pos.add_(1)
        slot.add_(1)
    torch.cuda.current_stream().wait_stream(stream)
    ref_slot, ref_pos = torch.tensor([126], device=dev), pos.clone()
    for _ in range(4):  # columns 126, 127, 0, 1
        graph.replay()
        ref_q = ops.rope_kv_write_reference(qkv, ref_pos, ref_slot, inv_freq, conc, *ref,
                                            HEADS, KV, D)
        ref_pos += 1
        ref_slot += 1
        close(q, ref_q, "graph q")
    torch.cuda.synchronize()
    assert torch.equal(ring[1], ref[1]) and torch.equal(ring[2], ref[2]), "graph cache"
    close(ring[0], ref[0], "graph k cache")


def main() -> None:
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    check_graph_slot(dev, g)
    print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}; "
          f"graph replay with a device-side slot: ok")
    print(f"{'op':<14}{'B':>5}{'fused us':>10}{'twin us':>10}{'speedup':>9}  differ (y or q, k)")
    for b in BATCHES:
        x = torch.randn(b, HIDDEN, generator=g, device=dev).to(torch.bfloat16)
        delta = torch.randn(b, HIDDEN, generator=g, device=dev).to(torch.bfloat16)
        w = torch.randn(HIDDEN, generator=g, device=dev).to(torch.bfloat16)
        h, y = ops.add_rmsnorm(x, delta, w, 1e-5)
        ref_h, ref_y = ops.add_rmsnorm_reference(x, delta, w, 1e-5)
        assert torch.equal(h, ref_h), "h"
        diff = close(y, ref_y, "y")
        diff += ", " + close(ops.add_rmsnorm(x, None, w, 1e-5)[1],
                             ops.add_rmsnorm_reference(x, None, w, 1e-5)[1], "y (no delta)")
        fused, twin = graph_times_us([[lambda: ops.add_rmsnorm(x, delta, w, 1e-5)],
                                      [lambda: ops.add_rmsnorm_reference(x, delta, w, 1e-5)]])
        row("add_rmsnorm", b, fused, twin, diff)

        qkv, pos, inv_freq, conc, caches = rope_inputs(b, dev, g)
        ours = [c.clone() for c in caches]
        slot = torch.tensor([700], device=dev)
        q = ops.rope_kv_write(qkv, pos, slot, inv_freq, conc, *ours, HEADS, KV, D)
        ref_q = ops.rope_kv_write_reference(qkv, pos, slot, inv_freq, conc, *caches, HEADS, KV,
                                            D)
        assert torch.equal(ours[1], caches[1]) and torch.equal(ours[2], caches[2]), "v, pos"
        diff = close(q, ref_q, "q") + ", " + close(ours[0], caches[0], "k cache")
        args = (qkv, pos, slot, inv_freq, conc)
        fused, twin = graph_times_us([
            [lambda: ops.rope_kv_write(*args, *ours, HEADS, KV, D)],
            [lambda: ops.rope_kv_write_reference(*args, *caches, HEADS, KV, D)]])
        row("rope_kv_write", b, fused, twin, diff)


if __name__ == "__main__":
    main()
