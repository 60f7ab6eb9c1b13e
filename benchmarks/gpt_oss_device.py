"""One-off H100 probe for issue 21: gpt-oss-20b- and 120b-shaped GptOss from_config on one GPU.

PYTHONPATH=src python3 benchmarks/gpt_oss_device.py [20b] [120b]
Prints build time, GPU memory of the weights, peak memory with an 8,192-token KV cache, and the
eager (no CUDA graph; issue 22's work) prefill and decode rates. Findings go to docs/model.md.
"""

import sys
import time

import torch

from mxfp4.models import GptOss, GptOssConfig

GiB = 2 ** 30


def measure(name: str, config: GptOssConfig, max_len: int = 8192, prompt: int = 512, new: int = 48):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    model = GptOss.from_config(config, device="cuda", seed=0)
    torch.cuda.synchronize()
    build = time.perf_counter() - t
    weights = torch.cuda.memory_allocated()
    g = torch.Generator(device="cuda").manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (prompt,), device="cuda", generator=g)
    model.generate(ids[:32], 4, max_len=64)  # warm-up: Triton compiles, cuBLAS picks algorithms
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    first = t0
    count = 0
    for i, token in enumerate(model.stream(ids, new, max_len=max_len, stop=[])):
        token.item()
        count += 1
        if i == 0:
            first = time.perf_counter()
    end = time.perf_counter()
    peak = torch.cuda.max_memory_allocated()
    decode = (end - first) / max(count - 1, 1)
    print(f"{name}: built in {build:.1f} s; weights {weights / GiB:.2f} GiB; peak with a "
          f"{max_len}-token cache {peak / GiB:.2f} GiB of {torch.cuda.get_device_properties(0).total_memory / GiB:.1f}; "
          f"prefill {prompt} tokens {first - t0:.3f} s ({prompt / (first - t0):,.0f} tokens/s); "
          f"decode {1 / decode:.1f} tokens/s ({decode * 1e3:.1f} ms/token, eager)", flush=True)
    del model
    torch.cuda.empty_cache()


if __name__ == "__main__":
    print(torch.cuda.get_device_name(0), torch.__version__, __import__("triton").__version__)
    presets = {"20b": GptOssConfig.gpt_oss_20b, "120b": GptOssConfig.gpt_oss_120b}
    for key in sys.argv[1:] or presets:
        measure(f"gpt-oss-{key} shape", presets[key]())
