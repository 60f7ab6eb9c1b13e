"""On a GPU machine: where the host time of one mxfp4.linear call goes (cProfile + timers).
Run: PYTHONPATH=src python3 benchmarks/host_profile.py
"""

import cProfile
import pstats
import time

import torch

import mxfp4
from mxfp4.layouts import prepack


def per_call_us(fn, n=2000, reps=5) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
        torch.cuda.synchronize()
    return best


def main() -> None:
    dev = torch.device("cuda")
    w = prepack(mxfp4.quantize(torch.randn(2880, 2880, device=dev)))
    x = torch.randn(1, 2880, device=dev).to(torch.bfloat16)
    call = lambda: mxfp4.linear(x, w)  # noqa: E731
    for _ in range(50):
        call()
    torch.cuda.synchronize()
    print(f"mxfp4.linear: {per_call_us(call):.1f} us")
    print(f"torch.empty(1, 2880): {per_call_us(lambda: torch.empty((1, 2880), dtype=x.dtype, device=dev)):.1f} us")
    print(f"torch.empty fp32 ws: {per_call_us(lambda: torch.empty((16, 1, 2880), dtype=torch.float32, device=dev)):.1f} us")
    print(f"x.device: {per_call_us(lambda: x.device):.2f} us")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(2000):
        call()
    prof.disable()
    torch.cuda.synchronize()
    pstats.Stats(prof).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main()
