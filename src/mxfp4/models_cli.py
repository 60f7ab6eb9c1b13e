"""`mxfp4 quantize` and `mxfp4 eval`: Hugging Face model folders in, tables and files out."""

from __future__ import annotations

import argparse
import json
import math
import os

from .codec import SCALE_RULES


DTYPES = ("auto", "float32", "bfloat16", "float16")


def register(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    q = sub.add_parser("quantize", help="quantize a Hugging Face model folder to MXFP4",
                       formatter_class=fmt,
                       description="Stream a safetensors model folder shard by shard and write "
                                   "its Linear weights as MXFP4. The output is written beside "
                                   "OUT_DIR and moved into place only when complete.")
    q.add_argument("model_dir", metavar="MODEL_DIR", help="float Hugging Face model folder")
    q.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="output folder (new or empty, or see --overwrite)")
    q.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty OUT_DIR; the old folder stays intact until the new "
                        "one is complete")
    q.add_argument("--method", choices=("rtn", "mse", "gptq"), default="rtn",
                   help="rtn: round to nearest; mse: per-block scale search; gptq: error feedback")
    q.add_argument("--scale-rule", choices=SCALE_RULES, default=None,
                   help="E8M0 scale rule for rtn/gptq (None: floor, the OCP rule)")
    q.add_argument("--hadamard", action="store_true",
                   help="rotate each weight's input dimension by a 32x32 Hadamard first")
    q.add_argument("--calib", metavar="TEXT_FILE", help="calibration text for gptq")
    q.add_argument("--calib-tokens", type=int, default=32768, help="calibration tokens for gptq")
    q.add_argument("--calib-seq", type=int, default=512, help="calibration sequence length")
    q.add_argument("--format", choices=("mxfp4", "compressed-tensors"), default="mxfp4",
                   dest="fmt", help="mxfp4: read by mxfp4.load_quantized; compressed-tensors: "
                                    "read by transformers and vLLM")
    q.add_argument("--embeddings", action="store_true", help="also quantize embedding tables")
    q.add_argument("--include", action="append", metavar="PATTERN",
                   help="only modules matching (glob, or re:REGEX); repeatable")
    q.add_argument("--exclude", action="append", metavar="PATTERN",
                   help="skip modules matching (glob, or re:REGEX); repeatable")
    _device_args(q, "quantize and run GPTQ on", "as stored")
    q.add_argument("--json", metavar="FILE", help="also write the summary as JSON ('-': stdout)")
    q.set_defaults(func=run_quantize)

    e = sub.add_parser("eval", help="perplexity of a model folder on a text file",
                       formatter_class=fmt,
                       description="Sliding-window perplexity of a float, mxfp4 or "
                                   "compressed-tensors causal LM folder.")
    e.add_argument("model_dir", metavar="MODEL_DIR", help="causal LM folder")
    e.add_argument("--text", required=True, metavar="FILE", help="UTF-8 text to score")
    e.add_argument("--max-tokens", type=int, default=16384, help="tokens of the text to use")
    e.add_argument("--context", type=int, default=512, help="window length")
    e.add_argument("--stride", type=int, default=256, help="window step (tokens scored per window)")
    e.add_argument("--no-bos", action="store_true", help="do not start each window with BOS")
    e.add_argument("--compare", metavar="FLOAT_DIR",
                   help="also report each decoder block's output QSNR against this model")
    e.add_argument("--compare-tokens", type=int, default=2048, help="tokens for --compare")
    e.add_argument("--plot", metavar="PNG", help="where to draw the QSNR per block "
                                                 "(None: qsnr.png with --compare)")
    _device_args(e, "run the model on", "as stored on cuda, float32 on cpu")
    e.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-': stdout)")
    e.set_defaults(func=run_eval)


def _device_args(parser, what: str, auto_dtype: str) -> None:
    parser.add_argument("--device", default="auto",
                        help=f"device to {what} (auto: cuda when present, else cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help=f"float dtype of the model (auto: {auto_dtype})")


def resolve_device(args):
    """(torch.device, dtype or None for 'as stored') from --device / --dtype, checked."""
    import torch

    name = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    name = "cpu" if name == "auto" else name
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {args.device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device!r}: no CUDA device is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {args.device!r}: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    if args.dtype == "auto":
        return device, None if device.type == "cuda" else torch.float32
    return device, getattr(torch, args.dtype)


def _console(args):
    """Tables go to stdout, or to stderr when JSON does; piped output is not folded to 80 columns."""
    import sys

    from rich.console import Console

    stream = sys.stderr if getattr(args, "json", None) == "-" else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 1000)


def check_outputs(args, *files: str) -> None:
    """Refuse bad --json / --plot destinations before any work starts."""
    from .io.output_folder import check_output_file

    for option in files:
        path = getattr(args, option, None)
        if path and path != "-":
            check_output_file(path, f"--{option}")


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True, console=console)


def text_tokens(tokenizer, path: str, max_tokens: int, option: str = "--max-tokens"):
    """The first max_tokens token ids of a UTF-8 text file (no special tokens); `option` names
    what set max_tokens, for the error."""
    import torch

    if max_tokens < 2:
        raise ValueError(f"{option} must give at least 2 tokens, got {max_tokens}")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder; give a UTF-8 text file")
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
    wanted = n_tokens // seq * body
    ids = text_tokens(tokenizer, path, wanted, "--calib-tokens / --calib-seq")
    n_seq = ids.numel() // body
    if n_seq == 0:
        raise ValueError(f"calibration text {path!r} has {ids.numel():,} tokens, fewer than one "
                         f"sequence of --calib-seq {seq}; pass a smaller --calib-seq or a longer text")
    if ids.numel() < wanted:
        raise ValueError(f"calibration text {path!r} has {ids.numel():,} tokens, fewer than "
                         f"--calib-tokens {n_tokens:,} needs ({wanted:,} text tokens in "
                         f"sequences of {seq}); pass --calib-tokens {n_seq * seq} or a longer text")
    rows = ids[:n_seq * body].reshape(n_seq, body)
    if bos is not None:
        rows = torch.cat((torch.full((n_seq, 1), bos, dtype=rows.dtype), rows), 1)
    return list(rows.split(batch))


def run_quantize(args) -> int:
    from transformers import AutoTokenizer

    from .io.hf import quantize_folder
    from .io.output_folder import check_output_folder

    # Everything a user can get wrong is checked before the work starts.
    check_output_folder(args.output, overwrite=args.overwrite, inputs=[args.model_dir])
    check_outputs(args, "json")
    if args.scale_rule is not None and args.method == "mse":
        raise ValueError("--scale-rule is not used by --method mse (it searches the scale per "
                         "block); drop it, or use --method rtn or gptq")
    if args.method != "gptq" and args.calib:
        raise ValueError("--calib is only used by --method gptq")
    if args.method == "gptq" and not args.calib:
        raise ValueError("--method gptq needs --calib TEXT_FILE")
    device, dtype = resolve_device(args)
    dtype = None if args.dtype == "auto" else dtype  # what is written stays as stored
    console = _console(args)
    calibration = None
    if args.method == "gptq":
        tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
        calibration = calibration_batches(tokenizer, args.calib, args.calib_tokens, args.calib_seq)
    with _progress(console) as bar:
        task = bar.add_task(f"quantizing ({args.method})", total=None)

        def progress(name, done, total):
            bar.update(task, completed=done, total=total, description=name)

        summary = quantize_folder(
            args.model_dir, args.output, method=args.method, scale_rule=args.scale_rule,
            hadamard=args.hadamard, include=args.include, exclude=args.exclude,
            embeddings=args.embeddings, calibration=calibration, fmt=args.fmt, progress=progress,
            overwrite=args.overwrite, device=device, dtype=dtype)
    console.print(_summary_table(summary))
    ratio = summary.bytes_before / summary.bytes_after if summary.bytes_after else math.nan
    console.print(f"{summary.converted} layers converted, {len(summary.skipped)} kept "
                  f"({_reasons(summary.skipped)}); weight files {summary.bytes_before:,} -> "
                  f"{summary.bytes_after:,} bytes ({ratio:.2f}x) in {summary.seconds:.1f} s; "
                  f"wrote {args.output} ({args.fmt}) on {device}")
    if args.json:
        _write_json(args.json, {
            "model_dir": args.model_dir, "output": args.output, "method": summary.method,
            "scale_rule": summary.scale_rule, "hadamard": summary.hadamard, "format": args.fmt,
            "device": str(device), "layers": [vars(r) for r in summary.layers],
            "skipped": summary.skipped, "bytes_before": summary.bytes_before,
            "bytes_after": summary.bytes_after, "seconds": summary.seconds})
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
    import sys

    from .tensor import atomic_write

    text = json.dumps(data, indent=2, default=str) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def _weights_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)
               if f.endswith(".safetensors"))


def check_context(model_dir: str, context: int, bos: bool) -> None:
    """Refuse an eval window (plus its BOS) longer than the model's position table."""
    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return  # load_model reports it
    limit = next((config[k] for k in ("max_position_embeddings", "n_positions", "n_ctx")
                  if isinstance(config.get(k), int)), None)
    if limit is not None and context + bos > limit:
        most = limit - bos
        raise ValueError(f"--context {context}{' plus BOS' if bos else ''} is longer than the "
                         f"{limit} positions of {model_dir!r}; pass --context {most} or less")


def run_eval(args) -> int:
    from rich.table import Table
    from transformers import AutoConfig, AutoTokenizer

    from .evaluate import check_causal_lm, hidden_state_qsnr, perplexity, plot_qsnr
    from .io.hf import load_model
    from .io.output_folder import check_output_file

    if os.path.isdir(args.text):
        raise ValueError(f"--text {args.text!r} is a folder; give a UTF-8 text file")
    if not os.path.isfile(args.text):
        raise FileNotFoundError(f"--text {args.text!r} does not exist")
    check_outputs(args, "json", "plot")
    if args.compare and not args.plot:
        check_output_file("qsnr.png", "--plot")
    device, dtype = resolve_device(args)
    check_context(args.model_dir, args.context, bos=not args.no_bos)
    for folder in filter(None, (args.model_dir, args.compare)):  # before a random head is built
        check_causal_lm(AutoConfig.from_pretrained(folder))
    console = _console(args)
    model, kind = load_model(args.model_dir, dtype=dtype, device=device)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    tokens = text_tokens(tokenizer, args.text, args.max_tokens)
    bos = _bos(tokenizer, args)
    with _progress(console) as bar:
        task = bar.add_task("perplexity", total=None)
        result = perplexity(model, tokens, context=args.context, stride=args.stride, bos_id=bos,
                            progress=lambda d, n: bar.update(task, completed=d, total=n))
    t = Table(title=f"{args.model_dir} ({kind}, {device})")
    for col in ("perplexity", "tokens scored", "windows", "context/stride", "weights bytes", "s"):
        t.add_column(col, justify="right")
    size = _weights_bytes(args.model_dir)
    t.add_row(f"{result.perplexity:.4f}", f"{result.tokens:,}", str(result.windows),
              f"{args.context}/{args.stride}", f"{size:,}", f"{result.seconds:.1f}")
    console.print(t)
    out = {"model_dir": args.model_dir, "kind": kind, "weights_bytes": size, **vars(result)}
    if args.compare:
        reference, _ = load_model(args.compare, dtype=dtype, device=device)
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
