"""Issue 23 "speed on the H100": one training step of the small LM under each recipe, alone on
the GPU, against the same model with plain nn.Linear, plus a profile of two of them.

A step is what mxfp4.train.loop does, minus its host reads: bf16 autocast forward, float32
cross entropy, backward, gradient clipping, AdamW. Batch 64 x 256 tokens (the arms' setting),
byte vocabulary, random token ids (the step time does not depend on the text). Medians of
CUDA-event-timed steps after warm-up. Then torch.profiler on one step of nn.Linear and of
mxfp4-sr-hadamard: the top CUDA kernels and the host time, to split quantize / Hadamard /
GEMMs / the rest (a host-bound step shows as host time above the GPU time).
Prediction (26 M parameters, 16,384 tokens): about 2.6 TFLOP a step, ~10 ms in bf16 at a
realistic 250 TFLOP/s for these small GEMMs; each MXFP4 GEMM adds two quantize passes over
its operands (~0.35 GB a step for the linear layers' operands at ~0.9 TB/s: ~0.4 ms per quantized
GEMM kind), so the fully-MXFP4 step should cost about 1.2-1.4x bf16 if nothing else is wasted.
Run: PYTHONPATH=src python benchmarks/train_step_device.py     (writes $OUT/train_step.json)
"""

import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from mxfp4.bench.model import Timer
from mxfp4.train import apply_recipe
from mxfp4.train.lm import LM, lm_config
from mxfp4.train.recipes import PRESETS

DEV, BATCH, SEQ, VOCAB, STEPS = "cuda", 64, 256, 259, 20


def make_step(recipe: str | None, capturable: bool = False):
    torch.manual_seed(0)
    model = LM(lm_config("small", VOCAB), seed=0).to(DEV)
    if recipe:
        apply_recipe(model, recipe)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), capturable=capturable)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ + 1), device=DEV, generator=torch.Generator(DEV).manual_seed(1))

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def median_ms(step) -> float:
    for _ in range(5):
        step()
    return statistics.median(Timer(DEV).each_ms(step, STEPS))


def graphed_ms(recipe: str | None) -> float:
    """The step captured once in a CUDA graph and replayed: the GPU's time alone, no Python.
    (Replays reuse the captured step's random seeds: right for timing, not for training.)"""
    step = make_step(recipe, capturable=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for _ in range(3):
        graph.replay()
    return statistics.median(Timer(DEV).each_ms(graph.replay, STEPS))


def host_ms(step) -> float:
    """Median host time of issuing one step (no sync inside): when it is close to the step's
    time, the step is host-bound and GPU work alone will not shorten it."""
    times = []
    for _ in range(7):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    torch.cuda.synchronize()
    return statistics.median(times)


def profile_step(step, label: str) -> dict:
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    kernels = sorted((e for e in events if e.device_type == torch.autograd.DeviceType.CUDA),
                     key=lambda e: -e.self_device_time_total)
    gpu_us = sum(e.self_device_time_total for e in kernels)
    cpu = sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]
    print(f"\n== {label}: GPU kernels {gpu_us / 1e3:.2f} ms; top host (self CPU) ops:")
    for e in cpu:
        print(f"   host {e.self_cpu_time_total / 1e3:8.3f} ms {e.count:5d}x  {e.key[:80]}")
    top = []
    for e in kernels[:14]:
        print(f"{e.self_device_time_total / 1e3:8.3f} ms {e.count:5d}x  {e.key[:90]}")
        top.append({"kernel": e.key[:120], "ms": e.self_device_time_total / 1e3, "count": e.count})
    return {"gpu_kernels_ms": gpu_us / 1e3, "top": top,
            "host_top": [{"op": e.key[:120], "ms": e.self_cpu_time_total / 1e3, "count": e.count}
                         for e in cpu]}


def main():
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    rows, hosts, graphs = {}, {}, {}
    for name in [None, *PRESETS]:
        step = make_step(name)
        label = name or "nn.Linear"
        rows[label] = median_ms(step)
        hosts[label] = host_ms(step)
        graphs[label] = graphed_ms(name)
        print(f"{label:<26} {rows[label]:8.2f} ms  {rows[label] / rows['nn.Linear']:5.2f}x  "
              f"host {hosts[label]:7.2f} ms   CUDA graph {graphs[label]:7.2f} ms "
              f"{graphs[label] / graphs['nn.Linear']:5.2f}x", flush=True)
    profiles = {label: profile_step(make_step(name), label)
                for label, name in (("nn.Linear", None), ("mxfp4-sr-hadamard", "mxfp4-sr-hadamard"))}
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "train_step.json"), "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "batch": BATCH, "seq": SEQ, "step_ms": rows, "host_ms": hosts, "graph_ms": graphs,
                       "profiles": profiles}, f, indent=1)


if __name__ == "__main__":
    main()
