"""Where a graph-replayed decode step of GptOss spends its GPU time (issue 22 probe).

Builds the model at a real shape with random weights, fills a 1,024-token cache, warms the
decoder (eager first step, then the captured graph) and records REPLAYS graph replays under
torch.profiler. Prints, per batch, the step's wall time (CUDA events), the summed kernel time,
and kernels grouped by name: time per step, launches per step, share.
Run: PYTHONPATH=src python benchmarks/profile_decode.py [--shape gpt-oss-120b] [--batches 1,64]
"""

import argparse
import collections
import statistics

import torch
from torch.profiler import ProfilerActivity, profile

from mxfp4.bench.model import SHAPES, Timer
from mxfp4.models.gpt_oss import GptOss

REPLAYS = 20


def profile_batch(model, batch: int, context: int = 1024) -> None:
    decoder = model.decoder(batch=batch, max_len=context + 64 + 3 * REPLAYS)
    decoder.cache.fill_random(context=context, seed=0)
    tok = torch.randint(model.config.vocab_size, (batch,), device=model.device)
    for _ in range(4):
        tok = decoder.step(tok)
    timer = Timer(model.device)
    step_ms = statistics.median(timer.each_ms(lambda: decoder.step(tok), REPLAYS))
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(REPLAYS):
            decoder.step(tok)
        torch.cuda.synchronize()
    per = collections.defaultdict(lambda: [0.0, 0])
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            slot = per[ev.name[:90]]
            slot[0] += ev.device_time / REPLAYS
            slot[1] += 1 / REPLAYS
    total = sum(v[0] for v in per.values())
    launches = sum(v[1] for v in per.values())
    print(f"\n== batch {batch}: step {step_ms * 1e3:.0f} us (events), kernels {total:.0f} us, "
          f"{launches:.0f} launches, gaps {step_ms * 1e3 - total:.0f} us")
    for name, (us, n) in sorted(per.items(), key=lambda kv: -kv[1][0])[:28]:
        print(f"{us:9.1f} us {n:6.0f}x {us / max(n, 1):7.2f} us/launch {100 * us / total:5.1f}%  {name}")
    del decoder


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="gpt-oss-120b")
    p.add_argument("--batches", default="1,64")
    p.add_argument("--attention", default=None, choices=[None, "mxfp4"])
    args = p.parse_args()
    model = GptOss.from_config(SHAPES[args.shape](), device="cuda", dtype=torch.bfloat16, seed=0,
                               quantize_attention=args.attention)
    for b in args.batches.split(","):
        profile_batch(model, int(b))


if __name__ == "__main__":
    main()
