"""Issue 22 probe: on the GPU, greedy tokens of the graph-captured Decoder equal the eager fused
path's, and eager fused logits stay close to the reference path (kernels off); then the decode
step time at batch 1 for the given shape. Usage: decode_graph_check.py [gpt-oss-20b|gpt-oss-120b|tiny]"""
import sys
import time

import torch

from mxfp4.models import GptOss, GptOssConfig

shape = sys.argv[1] if len(sys.argv) > 1 else "tiny"
if shape == "tiny":
    config = GptOssConfig(vocab_size=4096, hidden_size=256, num_hidden_layers=4, num_experts=8,
                          experts_per_token=2, intermediate_size=256, head_dim=64,
                          num_attention_heads=8, num_key_value_heads=2, sliding_window=16)
else:
    config = {"gpt-oss-20b": GptOssConfig.gpt_oss_20b, "gpt-oss-120b": GptOssConfig.gpt_oss_120b}[shape]()
t0 = time.time()
model = GptOss.from_config(config, device="cuda", seed=0)
print(f"{shape}: built in {time.time() - t0:.1f} s, {torch.cuda.memory_allocated() / 2**30:.2f} GiB")
g = torch.Generator(device="cuda").manual_seed(1)
B, T, N = 2, 40, 48
ids = torch.randint(0, config.vocab_size, (B, T), device="cuda", generator=g)

# eager fused vs reference logits on the prompt
model.kernels = False
ref = model(ids).float()
model.kernels = True
fused = model(ids).float()
print("prefill logits rel err fused(Flex) vs reference:", ((fused - ref).norm() / ref.norm()).item())

# greedy: graph vs eager decode steps, same kernels
def run(graphs):
    dec = model.decoder(B, T + N, graphs=graphs)
    toks = [dec.prefill(ids)]
    for _ in range(N - 1):
        toks.append(dec.step(toks[-1]))
    return torch.stack(toks, 1)
eager = run(False)
graph = run(True)
print("graph tokens == eager tokens:", torch.equal(eager, graph), "first differing step:",
      (eager != graph).any(0).nonzero()[:1].tolist())
model.kernels = False
reference = model.generate(ids, N, stop=())[:, T:]
model.kernels = True
print("fused greedy == reference greedy (kernels off) on", (reference == eager).float().mean().item(), "of tokens")

# timing: batch 1, context 1024
for batch in (1,):
    dec = model.decoder(batch, 1200)
    dec.cache.fill_random(1024)
    tok = torch.zeros(batch, dtype=torch.long, device="cuda")
    for _ in range(4):
        tok = dec.step(tok)
    torch.cuda.synchronize()
    times = []
    for _ in range(60):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); tok = dec.step(tok); b.record(); b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    print(f"{shape} decode batch {batch}: median {times[len(times)//2]:.3f} ms/token, min {times[0]:.3f}")
