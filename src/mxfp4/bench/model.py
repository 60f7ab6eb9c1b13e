"""`mxfp4 bench model`: a whole GPT-OSS model, random weights at the real shapes, decode and prefill.

Decode, for each batch B: `model.decoder(batch=B, ...)`, `--context` random keys and values in its
KV cache (cache.fill_random), WARMUP_STEPS steps (on CUDA the first one captures the step's CUDA
graph), then `--steps` steps, each timed with CUDA events: the median ms per step; tokens/s =
B / step time. Prefill: `decoder.prefill` of B x `--prompt` random tokens into a fresh cache, the
median of PREFILL_RUNS runs after a warm-up. Peak memory: torch.cuda.max_memory_allocated, reset
before each row (the weights are always in it). Floor: the bytes one decode step must read
(decode_bytes) at the copy rate COPY_BPS. Shapes in TRANSFORMERS_SHAPES are also timed in
transformers in the same run (bench/model_transformers.py), before our model is built.
On the CPU (tests, tiny shapes) the decoder runs eagerly and time.perf_counter times it.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time

import torch

from ..models.gpt_oss import GptOss, GptOssConfig
from .record import environment, markdown_table, write_results

# The copy rate (read + write) measured on the H100 with `mxfp4 bench moe` (docs/benchmarks/moe.md):
# what a decode step that only streams its weights could reach.
COPY_BPS = 3.03e12
WARMUP_STEPS = 4
PREFILL_RUNS = 3
SHAPES = {"gpt-oss-120b": GptOssConfig.gpt_oss_120b, "gpt-oss-20b": GptOssConfig.gpt_oss_20b}
GPU_ONLY = {"gpt-oss-120b", "gpt-oss-20b"}  # tens of GB: the CPU runs only shapes tests add
TRANSFORMERS_SHAPES = {"gpt-oss-20b"}  # 120b in bf16 (about 234 GB) fits no single GPU
ATTENTION = {"bf16": None, "mxfp4": "mxfp4"}  # --attention -> GptOss quantize_attention
VARIANT = {None: "mxfp4 (bf16 attention)", "mxfp4": "mxfp4 (MXFP4 attention)"}
COLUMNS = ["model", "variant", "path", "batch", "context", "prompt", "ms", "tokens_per_s",
           "wall_tokens_per_s", "floor_ms", "floor_frac", "floor_GB", "speedup", "peak_GB", "config", "error"]


# -- the floor --------------------------------------------------------------------------------
def tensor_bytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def linear_bytes(layer) -> int:
    """Bytes of a projection as the model holds it: bf16 weight, or MXFP4 codes + scales, and bias."""
    if getattr(layer, "packed", False):  # mxfp4.nn.MXLinear in the kernel layout (on CUDA)
        return tensor_bytes(layer.packed_codes, layer.packed_scales, layer.bias)
    if hasattr(layer, "weight_codes"):  # mxfp4.nn.MXLinear in the portable layout
        return tensor_bytes(layer.weight_codes, layer.weight_scales, layer.bias)
    if isinstance(layer, torch.nn.Linear):
        return tensor_bytes(layer.weight, layer.bias)
    raise TypeError(f"cannot count the bytes of a {type(layer).__name__}")


def expert_bytes(moe) -> int:
    """One expert's MXFP4 codes and scales (the kernels' packed buffers) and its biases."""
    return tensor_bytes(moe.w1_codes[0], moe.w1_scales[0], moe.w2_codes[0], moe.w2_scales[0],
                        moe.b1[0], moe.b2[0])


def decode_bytes(model: GptOss, batch: int = 1, context: int = 1024) -> dict:
    """Bytes one decode step of `batch` rows must read with `context` tokens in the cache, by part.

    experts: the distinct experts of a layer, times its layers; exactly k at batch 1, for larger
    batches the expected number under uniform routing, E (1 - (1 - k/E)^B). attention: qkv and
    out projections; unembedding: the whole matrix; kv_cache: keys and values of the positions
    each layer attends to (min(context, window) on sliding layers); other: routers, norms, sinks
    and the embedding rows. Written K/V and activations are left out (a few KB).
    """
    c = model.config
    E, k = c.num_experts, c.experts_per_token
    distinct = E - E * (1 - k / E) ** batch
    item = torch.empty(0, dtype=model.dtype).element_size()
    parts = {"experts": 0.0, "attention": 0, "unembedding": linear_bytes(model.unembedding),
             "kv_cache": 0, "other": tensor_bytes(model.norm.weight) + batch * c.hidden_size * item}
    for block in model.blocks:
        a, moe = block.attn, block.mlp.moe
        parts["experts"] += distinct * expert_bytes(moe)
        parts["attention"] += linear_bytes(a.qkv) + linear_bytes(a.out)
        seen = min(context, a.window) if a.window else context
        parts["kv_cache"] += batch * 2 * seen * c.num_key_value_heads * c.head_dim * item
        parts["other"] += tensor_bytes(moe.router_weight, moe.router_bias, a.norm.weight,
                                       block.mlp.norm.weight, a.sinks)
    parts["total"] = sum(parts.values())
    return parts


def floor_ms(nbytes: float) -> float:
    return nbytes / COPY_BPS * 1e3


# -- timing -----------------------------------------------------------------------------------
class Timer:
    """Milliseconds of calls: CUDA events on a CUDA device (no host wait between the calls),
    time.perf_counter elsewhere."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def each_ms(self, fn, n: int) -> list[float]:
        """The time of each of n calls of fn, run back to back."""
        self.sync()
        if not self.cuda:
            out = []
            for _ in range(n):
                t = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t) * 1e3)
            return out
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(n)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events]


def _memory_start(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device):
    """Peak allocated GPU memory since _memory_start, or "" off CUDA."""
    return torch.cuda.max_memory_allocated(device) / 1e9 if torch.device(device).type == "cuda" else ""


def time_decode(model: GptOss, batch: int, context: int, steps: int, timer: Timer) -> tuple[float, float]:
    """(median ms of one decode step of `batch` rows after `context` cached tokens, wall-clock ms
    per step over the whole timed loop: host time included, what a caller waits)."""
    decoder = model.decoder(batch=batch, max_len=context + WARMUP_STEPS + steps + 1)
    decoder.cache.fill_random(context=context, seed=0)
    g = torch.Generator(device=model.device).manual_seed(batch)
    tokens = [torch.randint(model.config.vocab_size, (batch,), generator=g, device=model.device)]

    def step():
        tokens[0] = decoder.step(tokens[0])

    for _ in range(WARMUP_STEPS):
        step()
    timer.sync()
    t = time.perf_counter()
    ms = statistics.median(timer.each_ms(step, steps))  # ends with a device synchronisation
    wall = (time.perf_counter() - t) * 1e3 / steps
    del decoder
    return ms, wall


def time_prefill(model: GptOss, batch: int, prompt: int, timer: Timer) -> float:
    """Median ms of decoder.prefill of `batch` random prompts of `prompt` tokens, each run into
    an empty cache (emptied outside the timing)."""
    g = torch.Generator(device=model.device).manual_seed(prompt)
    ids = torch.randint(model.config.vocab_size, (batch, prompt), generator=g, device=model.device)
    decoder = model.decoder(batch=batch, max_len=prompt + 1)
    times = []
    for _ in range(1 + PREFILL_RUNS):
        decoder.reset()
        times += timer.each_ms(lambda: decoder.prefill(ids), 1)
    del decoder
    return statistics.median(times[1:])


def bench_model(name: str, quantize_attention, args, log) -> list[dict]:
    """Every decode and prefill row of one shape with one attention choice. Decode rows also
    hold floor_parts_GB (decode_bytes in GB; in the JSON, not a column)."""
    dev, timer = args.device, Timer(args.device)
    _memory_start(dev)
    t = time.perf_counter()
    model = GptOss.from_config(SHAPES[name](), device=dev, dtype=torch.bfloat16, seed=0,
                               quantize_attention=quantize_attention)
    timer.sync()
    log(f"{name}, {VARIANT[quantize_attention]}: built in {time.perf_counter() - t:.1f} s"
        + (f", {peak_gb(dev):.1f} GB" if timer.cuda else ""))
    base = {"model": name, "variant": VARIANT[quantize_attention]}
    rows = []
    jobs = [("decode", B) for B in args.batches] + [("prefill", B) for B in args.prefill_batches]
    for path, B in jobs:
        row = dict(base, path=path, batch=B, context=args.context if path == "decode" else "",
                   prompt=args.prompt if path == "prefill" else "")
        _memory_start(dev)
        try:
            if path == "decode":
                ms, wall = time_decode(model, B, args.context, args.steps, timer)
                parts = decode_bytes(model, B, args.context)
                fl = floor_ms(parts["total"])
                row.update(ms=ms, tokens_per_s=B * 1e3 / ms, wall_tokens_per_s=B * 1e3 / wall,
                           floor_ms=fl, floor_frac=fl / ms, floor_GB=parts["total"] / 1e9,
                           floor_parts_GB={k: v / 1e9 for k, v in parts.items()})
            else:
                ms = time_prefill(model, B, args.prompt, timer)
                row.update(ms=ms, tokens_per_s=B * args.prompt * 1e3 / ms)
        except torch.cuda.OutOfMemoryError as err:  # one batch too big keeps the others
            row["error"] = f"out of memory: {str(err).splitlines()[0][:200]}"
        row["peak_GB"] = peak_gb(dev)
        log(_line(row))
        rows.append(row)
    del model
    _memory_start(dev)
    return rows


# -- the suite --------------------------------------------------------------------------------
def floor_table(rows: list[dict]) -> str:
    """The bytes of the batch-1 decode rows by part (their floor_parts_GB), as markdown."""
    parts = ["experts", "attention", "unembedding", "kv_cache", "other", "total"]
    table = [{"model": r["model"], "variant": r["variant"],
              **{f"{p}_GB": r["floor_parts_GB"][p] for p in parts}, "floor_ms": r["floor_ms"]}
             for r in rows if r.get("path") == "decode" and r.get("batch") == 1 and "floor_parts_GB" in r]
    if not table:
        return ""
    return ("Bytes a batch-1 decode step reads, by part (GB):\n\n"
            + markdown_table(["model", "variant"] + [f"{p}_GB" for p in parts] + ["floor_ms"], table))


def add_speedups(rows: list[dict]) -> None:
    """speedup = transformers' time / ours for the same shape, path and batch."""
    theirs = {(r["model"], r["path"], r["batch"]): r["ms"] for r in rows
              if r["variant"].startswith("transformers") and isinstance(r.get("ms"), float)}
    for r in rows:
        key = (r["model"], r["path"], r["batch"])
        if key in theirs and not r["variant"].startswith("transformers") and isinstance(r.get("ms"), float):
            r["speedup"] = theirs[key] / r["ms"]


def carried_rows(out: str, shapes, env: dict) -> list[dict]:
    """Rows of other shapes from an earlier model.json in `out`, so that runs of one shape each
    build one table; their run (date, device) goes to env["runs"]."""
    path = os.path.join(out, "model.json") if out else ""
    if not path or not os.path.exists(path):
        return []
    try:
        old = json.loads(open(path, encoding="utf-8").read())
        rows = [r for r in old["rows"] if r.get("model") not in shapes]
        old_env = old.get("environment", {})
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a model benchmark record ({err}); move it away") from err
    for name in dict.fromkeys(r.get("model") for r in rows):
        env["runs"][name] = old_env.get("runs", {}).get(
            name, f"{old_env.get('date')}, {old_env.get('device')}")
    return rows


def run(args) -> int:
    dev = args.device
    if torch.device(dev).type != "cuda" and GPU_ONLY & set(args.shape):
        raise ValueError(f"mxfp4 bench model: {', '.join(sorted(GPU_ONLY & set(args.shape)))} "
                         f"needs --device cuda")
    if torch.device(dev).type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("mxfp4 bench model: no CUDA device here")
    env = environment(dev)
    env["runs"] = {name: f"{env['date']}, {env['device']}" for name in args.shape}
    carried = carried_rows(args.out, args.shape, env)  # a bad earlier file fails before any work
    measured = []

    def log(msg):
        print(msg, flush=True)

    def save():  # after each part, so that a later failure keeps what was measured
        add_speedups(measured)
        if args.out:
            notes = "\n\n".join(filter(None, [notes_text(args), floor_table(carried + measured)]))
            title = "GPT-OSS whole model: decode and prefill (random weights at the real shapes)"
            paths = write_results(args.out, "model", title, env, COLUMNS, carried + measured, notes=notes)
            log(f"wrote {' '.join(paths)}")

    for name in args.shape:
        if args.transformers and name in TRANSFORMERS_SHAPES:
            from .model_transformers import bench_transformers

            measured += bench_transformers(name, SHAPES[name](), args, log)
            save()
        elif args.transformers:
            log(f"{name}: no transformers row (bf16 weights of this shape do not fit one GPU)")
        for q in args.attention:
            measured += bench_model(name, ATTENTION[q], args, log)
            save()
    print_table(measured)
    return 0


def notes_text(args) -> str:
    shapes = ",".join(args.shape)
    return (
        f"Command: `mxfp4 bench model --shape {shapes} --batches {_ints(args.batches)} --context "
        f"{args.context} --prompt {args.prompt} --prefill-batches {_ints(args.prefill_batches)} "
        f"--steps {args.steps}`. Decode: ms per step (one token per row), the median of "
        f"{args.steps} steps timed with CUDA events after {WARMUP_STEPS} warm-up steps, with "
        f"`--context` random keys and values in the cache; tokens_per_s = batch / step time; "
        f"wall_tokens_per_s: from the wall-clock time of the whole timed loop (host included). "
        f"Prefill: ms for batch x prompt tokens into a fresh cache, the median of {PREFILL_RUNS} "
        f"runs after a warm-up. floor_GB: the bytes a decode step must read (experts actually "
        f"routed, k per layer at batch 1 and the expected distinct ones under uniform routing "
        f"above, attention projections, unembedding, the KV cache at the context, routers and "
        f"norms); floor_ms = floor_GB / {COPY_BPS / 1e12:.2f} TB/s, the copy rate measured on "
        f"the H100; floor_frac = floor / measured. speedup: transformers' time / ours for the "
        f"same shape, path and batch; transformers rows: see bench/model_transformers.py (generate "
        f"with a static cache and its default compilation; decode from two generate lengths). "
        f"peak_GB: torch.cuda.max_memory_allocated during the row, "
        f"weights included.")


def _ints(values) -> str:
    return ",".join(str(v) for v in values)


def _line(r: dict) -> str:
    if r.get("error"):
        return f"{r['model']} {r['variant']} {r['path']} B={r['batch']}: {r['error']}"
    floor = f", floor {r['floor_ms']:.3f} ms ({r['floor_frac']:.0%})" if r.get("floor_ms") else ""
    return (f"{r['model']} {r['variant']} {r['path']} B={r['batch']}: {r['ms']:.3f} ms, "
            f"{r['tokens_per_s']:,.0f} tokens/s{floor}")


def print_table(rows: list[dict]) -> None:
    cols = ["model", "variant", "path", "batch", "ms", "tokens_per_s", "wall_tokens_per_s",
            "floor_frac", "speedup", "peak_GB", "error"]
    shown = [c for c in cols if any(r.get(c) not in ("", None) for r in rows)]
    print(markdown_table(shown, rows))


# -- arguments --------------------------------------------------------------------------------
def positive_ints(text: str) -> list[int]:
    """'1,8,64' -> [1, 8, 64]: positive, distinct."""
    import argparse

    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct positive integers, got {text!r}")
    return values


def positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def shape_names(text: str) -> list[str]:
    import argparse

    names = [n.strip() for n in str(text).split(",")]
    bad = [n for n in names if n not in SHAPES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown shape {', '.join(bad)}; choose from "
                                         f"{', '.join(SHAPES)} (comma-separated)")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a shape is named twice in {text!r}")
    return names


def attention_choice(text: str) -> list[str]:
    import argparse

    if text == "both":
        return list(ATTENTION)
    if text not in ATTENTION:
        raise argparse.ArgumentTypeError(f"expected bf16, mxfp4 or both, got {text!r}")
    return [text]


def add_arguments(p) -> None:
    import argparse

    p.add_argument("--shape", type=shape_names, default="gpt-oss-120b",
                   help=f"model shape(s), comma-separated: {', '.join(SHAPES)}")
    p.add_argument("--batches", type=positive_ints, default="1,8,64,256",
                   help="decode batch sizes, comma-separated")
    p.add_argument("--context", type=positive_int, default=1024,
                   help="tokens in the KV cache while decoding")
    p.add_argument("--prompt", type=positive_int, default=2048, help="prompt length for prefill")
    p.add_argument("--prefill-batches", type=positive_ints, default="1,8",
                   help="prefill batch sizes (prompts of --prompt tokens), comma-separated")
    p.add_argument("--steps", type=positive_int, default=128, help="decode steps timed per batch")
    p.add_argument("--attention", type=attention_choice, default="both",
                   help="attention projections and unembedding: bf16, mxfp4 (quantize_attention) "
                        "or both")
    p.add_argument("--transformers", action=argparse.BooleanOptionalAction, default=True,
                   help=f"also time transformers' GptOssForCausalLM (bf16) for "
                        f"{', '.join(sorted(TRANSFORMERS_SHAPES))}")
    p.add_argument("--device", default="cuda", help="a CUDA device (cpu: tiny test shapes only)")
