"""`mxfp4 quantize` and `mxfp4 eval`: Hugging Face model folders in, tables and files out."""

from __future__ import annotations

import json
import math
import os

from .codec import SCALE_RULES


def register(sub) -> None:
    q = sub.add_parser("quantize", help="quantize a Hugging Face model folder to MXFP4",
                       description="Stream a safetensors model folder shard by shard and write "
                                   "its Linear weights as MXFP4.")
    q.add_argument("model_dir", metavar="MODEL_DIR")
    q.add_argument("-o", "--output", required=True, metavar="OUT_DIR")
    q.add_argument("--method", choices=("rtn", "mse", "gptq"), default="rtn",
                   help="rtn: round to nearest; mse: per-block scale search; gptq: error feedback")
    q.add_argument("--scale-rule", choices=SCALE_RULES, default=None,
                   help="E8M0 scale rule for rtn/gptq (default floor, the OCP rule)")
    q.add_argument("--hadamard", action="store_true",
                   help="rotate each weight's input dimension by a 32x32 Hadamard first")
    q.add_argument("--calib", metavar="TEXT_FILE", help="calibration text for gptq")
    q.add_argument("--calib-tokens", type=int, default=32768)
    q.add_argument("--calib-seq", type=int, default=512, help="calibration sequence length")
    q.add_argument("--format", choices=("mxfp4", "compressed-tensors"), default="mxfp4",
                   dest="fmt")
    q.add_argument("--embeddings", action="store_true", help="also quantize embedding tables")
    q.add_argument("--include", action="append", metavar="PATTERN",
                   help="only modules matching (glob, or re:REGEX); repeatable")
    q.add_argument("--exclude", action="append", metavar="PATTERN",
                   help="skip modules matching (glob, or re:REGEX); repeatable")
    q.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    q.set_defaults(func=run_quantize)

    e = sub.add_parser("eval", help="perplexity of a model folder on a text file",
                       description="Sliding-window perplexity of a float, mxfp4 or "
                                   "compressed-tensors model folder.")
    e.add_argument("model_dir", metavar="MODEL_DIR")
    e.add_argument("--text", required=True, metavar="FILE")
    e.add_argument("--max-tokens", type=int, default=16384, help="tokens of the text to use")
    e.add_argument("--context", type=int, default=512, help="window length")
    e.add_argument("--stride", type=int, default=256, help="window step (tokens scored per window)")
    e.add_argument("--no-bos", action="store_true", help="do not start each window with BOS")
    e.add_argument("--compare", metavar="FLOAT_DIR",
                   help="also report each decoder block's output QSNR against this model")
    e.add_argument("--compare-tokens", type=int, default=2048)
    e.add_argument("--plot", metavar="PNG", help="where to draw the QSNR per block "
                                                 "(default qsnr.png with --compare)")
    e.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    e.set_defaults(func=run_eval)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True)


def text_tokens(tokenizer, path: str, max_tokens: int):
    """The first max_tokens token ids of a UTF-8 text file (no special tokens)."""
    import torch

    if max_tokens < 2:
        raise ValueError(f"--max-tokens must be at least 2, got {max_tokens}")
    chars = 16 * max_tokens  # read only what the tokens need: large files tokenize slowly
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(chars)
                more = bool(f.read(1))
        except UnicodeDecodeError as err:
            raise ValueError(f"{path!r} is not UTF-8 text: {err}") from err
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens or not more:
            break
        chars *= 2
    ids = ids[:max_tokens]
    if len(ids) < 2:
        raise ValueError(f"{path!r} has fewer than 2 tokens")
    return torch.tensor(ids, dtype=torch.long)


def _bos(tokenizer, args) -> int | None:
    return None if getattr(args, "no_bos", False) else tokenizer.bos_token_id


def calibration_batches(tokenizer, path: str, n_tokens: int, seq: int, batch: int = 8) -> list:
    """Calibration input-id batches [batch, seq], each sequence starting with BOS if any."""
    import torch

    if seq < 2 or n_tokens < seq:
        raise ValueError(f"need --calib-seq >= 2 and --calib-tokens >= --calib-seq, got "
                         f"{seq} and {n_tokens}")
    bos = tokenizer.bos_token_id
    body = seq - (bos is not None)
    ids = text_tokens(tokenizer, path, n_tokens // seq * body)
    n_seq = ids.numel() // body
    if n_seq == 0:
        raise ValueError(f"{path!r} is shorter than one calibration sequence ({seq} tokens)")
    rows = ids[:n_seq * body].reshape(n_seq, body)
    if bos is not None:
        rows = torch.cat((torch.full((n_seq, 1), bos, dtype=rows.dtype), rows), 1)
    return list(rows.split(batch))


def run_quantize(args) -> int:
    from rich.console import Console
    from transformers import AutoTokenizer

    from .io.hf import quantize_folder

    console = Console()
    calibration = None
    if args.method == "gptq":
        if not args.calib:
            raise ValueError("--method gptq needs --calib TEXT_FILE")
        tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
        calibration = calibration_batches(tokenizer, args.calib, args.calib_tokens, args.calib_seq)
    elif args.calib:
        raise ValueError("--calib is only used by --method gptq")
    with _progress() as bar:
        task = bar.add_task(f"quantizing ({args.method})", total=None)

        def progress(name, done, total):
            bar.update(task, completed=done, total=total, description=name)

        summary = quantize_folder(
            args.model_dir, args.output, method=args.method, scale_rule=args.scale_rule,
            hadamard=args.hadamard, include=args.include, exclude=args.exclude,
            embeddings=args.embeddings, calibration=calibration, fmt=args.fmt, progress=progress)
    console.print(_summary_table(summary))
    ratio = summary.bytes_before / summary.bytes_after if summary.bytes_after else math.nan
    console.print(f"{summary.converted} layers converted, {len(summary.skipped)} kept "
                  f"({_reasons(summary.skipped)}); weight files {summary.bytes_before:,} -> "
                  f"{summary.bytes_after:,} bytes ({ratio:.2f}x) in {summary.seconds:.1f} s; "
                  f"wrote {args.output} ({args.fmt})")
    if args.json:
        _write_json(args.json, {
            "model_dir": args.model_dir, "output": args.output, "method": summary.method,
            "scale_rule": summary.scale_rule, "hadamard": summary.hadamard, "format": args.fmt,
            "layers": [vars(r) for r in summary.layers], "skipped": summary.skipped,
            "bytes_before": summary.bytes_before, "bytes_after": summary.bytes_after,
            "seconds": summary.seconds})
    return 0


def _reasons(skipped: dict) -> str:
    counts = {}
    for reason in skipped.values():
        counts[reason] = counts.get(reason, 0) + 1
    return "; ".join(f"{n} {r}" for r, n in counts.items()) or "none"


def _summary_table(summary):
    from rich.table import Table

    t = Table(title=f"MXFP4 {summary.method} (scale rule {summary.scale_rule}"
                    f"{', hadamard' if summary.hadamard else ''})")
    t.add_column("layer", overflow="fold")
    for col in ("kind", "shape", "QSNR dB", "bytes before", "bytes after"):
        t.add_column(col, justify="right")
    for r in summary.layers:
        t.add_row(r.name, r.kind, "x".join(map(str, r.shape)), f"{r.qsnr_db:.2f}",
                  f"{r.bytes_before:,}", f"{r.bytes_after:,}")
    before = sum(r.bytes_before for r in summary.layers)
    after = sum(r.bytes_after for r in summary.layers)
    t.add_row("total (quantized layers)", "", "", "", f"{before:,}", f"{after:,}")
    return t


def _write_json(path: str, data: dict) -> None:
    from .tensor import atomic_write

    text = json.dumps(data, indent=2, default=str) + "\n"
    atomic_write(path, lambda tmp: open(tmp, "w").write(text))


def _weights_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)
               if f.endswith(".safetensors"))


def run_eval(args) -> int:
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoTokenizer

    from .evaluate import hidden_state_qsnr, perplexity, plot_qsnr
    from .io.hf import load_model

    console = Console()
    model, kind = load_model(args.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    tokens = text_tokens(tokenizer, args.text, args.max_tokens)
    bos = _bos(tokenizer, args)
    with _progress() as bar:
        task = bar.add_task("perplexity", total=None)
        result = perplexity(model, tokens, context=args.context, stride=args.stride, bos_id=bos,
                            progress=lambda d, n: bar.update(task, completed=d, total=n))
    t = Table(title=f"{args.model_dir} ({kind})")
    for col in ("perplexity", "tokens scored", "windows", "context/stride", "weights bytes", "s"):
        t.add_column(col, justify="right")
    size = _weights_bytes(args.model_dir)
    t.add_row(f"{result.perplexity:.4f}", f"{result.tokens:,}", str(result.windows),
              f"{args.context}/{args.stride}", f"{size:,}", f"{result.seconds:.1f}")
    console.print(t)
    out = {"model_dir": args.model_dir, "kind": kind, "weights_bytes": size, **vars(result)}
    if args.compare:
        reference, _ = load_model(args.compare)
        rows = hidden_state_qsnr(model, reference, tokens, context=args.context,
                                 max_tokens=args.compare_tokens, bos_id=bos)
        q = Table(title=f"QSNR vs {args.compare} on {min(tokens.numel(), args.compare_tokens)} tokens")
        q.add_column("output of")
        q.add_column("QSNR dB", justify="right")
        for label, value in rows:
            q.add_row(label, f"{value:.2f}")
        console.print(q)
        plot = args.plot or "qsnr.png"
        plot_qsnr(rows, plot, f"{os.path.basename(os.path.normpath(args.model_dir))} vs float")
        console.print(f"plot: {plot}")
        out["qsnr"] = rows
    if args.json:
        _write_json(args.json, out)
    return 0
