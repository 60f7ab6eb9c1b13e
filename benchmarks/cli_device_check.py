"""One-off GPU check of `mxfp4 quantize` / `mxfp4 eval --device cuda` (issue 20).

Run on a CUDA machine from the repo root: PYTHONPATH=src:tests python3 benchmarks/cli_device_check.py
Prints one line per check; exits 1 if any failed. Its findings go to docs/benchmarks/gpu-tests.md.
"""

import json
import os
import sys
import tempfile
from unittest import mock

import torch
from safetensors.torch import load_file

from mx_tiny_models import save_tiny_folder, write_text
from mxfp4.cli import main
from mxfp4.evaluate import perplexity
from mxfp4.io.hf import load_model, place
from mxfp4.models_cli import text_tokens

failed = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
    if not ok:
        failed.append(name)


def tensors(folder):
    out = {}
    for f in os.listdir(folder):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(folder, f)))
    return out


base = tempfile.mkdtemp()
src = os.path.join(base, "float")
save_tiny_folder(src)
text = write_text(os.path.join(base, "text.txt"))
for method in ("rtn", "mse"):
    for dev in ("cpu", "cuda"):
        assert main(["quantize", src, "-o", f"{base}/{method}-{dev}", "--method", method,
                     "--device", dev, "--json", f"{base}/{method}-{dev}.json"]) == 0
    a, b = tensors(f"{base}/{method}-cpu"), tensors(f"{base}/{method}-cuda")
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    check(f"quantize {method}: cuda output equals cpu output, bit for bit", same)
    check(f"quantize {method}: summary says cuda",
          json.load(open(f"{base}/{method}-cuda.json"))["device"].startswith("cuda"))

calib = ["--calib", text, "--calib-tokens", "2048", "--calib-seq", "128"]
for extra in ([], ["--hadamard"]):
    for dev in ("cpu", "cuda"):
        assert main(["quantize", src, "-o", f"{base}/gptq{extra}-{dev}", "--method", "gptq",
                     "--device", dev, *calib, *extra]) == 0
    a, b = tensors(f"{base}/gptq{extra}-cpu"), tensors(f"{base}/gptq{extra}-cuda")
    codes = [k for k in a if k.endswith("weight_codes")]
    agree = sum(int((a[k] == b[k]).sum()) for k in codes) / sum(a[k].numel() for k in codes)
    check(f"quantize gptq {extra} on cuda: codes agree with cpu (sums differ in order)",
          agree > 0.98, f"{agree:.4f} of code bytes equal")

tok = __import__("mx_tiny_models").char_tokenizer()
ids = text_tokens(tok, text, 600)
ppl = {}
for dev in ("cpu", "cuda"):
    model, _ = load_model(f"{base}/rtn-cpu", dtype=torch.float32, device=dev)
    ppl[dev] = perplexity(model, ids, context=128, stride=64, bos_id=2).perplexity
check("eval: cuda perplexity matches cpu", abs(ppl["cuda"] / ppl["cpu"] - 1) < 1e-4, str(ppl))

model, _ = load_model(f"{base}/rtn-cpu", dtype=torch.float32, device="cpu")
need = sum(t.nbytes for t in model.state_dict().values())
with mock.patch("torch.cuda.mem_get_info", return_value=(need // 2, 80 << 30)):
    split = place(model, "cuda")
devices = {str(p.device) for p in split.parameters()} | {str(b.device) for b in split.buffers()}
p_split = perplexity(split, ids, context=128, stride=64, bos_id=2).perplexity
check("eval: a model larger than free GPU memory is dispatched layer by layer",
      len(devices) > 1 and abs(p_split / ppl["cuda"] - 1) < 1e-4, f"{sorted(devices)} {p_split}")

assert main(["eval", f"{base}/rtn-cpu", "--text", text, "--context", "128", "--stride", "64",
             "--max-tokens", "600", "--json", f"{base}/eval.json"]) == 0
result = json.load(open(f"{base}/eval.json"))
check("mxfp4 eval (default device) runs on cuda", abs(result["perplexity"] / ppl["cuda"] - 1) < 1e-2,
      f"{result['perplexity']:.4f}")
print(f"{len(failed)} failed")
sys.exit(1 if failed else 0)
