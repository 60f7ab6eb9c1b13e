"""QAT recovery on Gemma 3 270M (issue 23): the float fine-tune control and the results file.

The QAT arm is the plain command (docs/training.md gives it):
    mxfp4 train qat MODEL --text train.txt -o QAT_DIR --steps ... --lr ...
    mxfp4 eval QAT_DIR --text eval.txt --max-tokens 16384 --context 512 --stride 256 --json E.json

Fine-tuning on SOTU text also adapts the model to the topic of the evaluation text, so part of
what QAT "recovers" may be adaptation. The control separates it: the same model, tokens, batch
order, learning-rate schedule and optimizer as a finished `mxfp4 train qat` run (read from its
run.json), with no quantization (the QAT layers switched off are exactly nn.Linear, so the plain
model is trained), written as a float Hugging Face folder that `mxfp4 eval` reads:

    python benchmarks/qat_gemma.py control MODEL QAT_DIR -o FLOAT_DIR
    python benchmarks/qat_gemma.py report --baseline E0.json --rtn E1.json \
        --arm qat-floor QAT_DIR E2.json --arm float-control FLOAT_DIR E3.json \
        -o docs/benchmarks/training-gemma3-270m.json

`qat-frozen` repeats a QAT run (same tokens, order, schedule, seed) with only the QAT Linear
layers trained (embeddings, tied head, norms frozen) at its own --lr, writing the MXFP4 folder:

    python benchmarks/qat_gemma.py qat-frozen MODEL QAT_DIR -o OUT_DIR --lr 2e-5

`report` only gathers measured numbers (eval JSONs, loss logs, run settings) and computes the
recovered fraction (ppl_RTN - ppl_X) / (ppl_RTN - ppl_baseline); it measures nothing itself.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def _finish(output, tokenizer, record, result, started, label):
    """The rest of a run's folder beside its model: tokenizer, run.json, loss log and plot."""
    from mxfp4.train.loop import write_json, write_log

    tokenizer.save_pretrained(output)
    write_json(os.path.join(output, "run.json"), record)
    write_log(output, result.log, result.log["title"])
    print(f"{label}: {result.step} steps, last validation loss "
          f"{result.log['val'][-1]['loss']:.4f}, {time.perf_counter() - started:.0f} s; wrote {output}")


def _recorded_run(args):
    """(run, data, settings, batches, validation rows, tokenizer) of a finished QAT run, checked
    to give the same text and the same batches in the same order."""
    from transformers import AutoTokenizer

    from mxfp4.train.data import (TokenBatches, read_text, sequences, split_text,
                                  text_fingerprint, tokenize)
    from mxfp4.train.loop import TrainSettings

    with open(os.path.join(args.qat_dir, "run.json")) as f:
        run = json.load(f)
    if run.get("command") != "qat":
        raise ValueError(f"{args.qat_dir!r} is not a finished `mxfp4 train qat` run")
    if os.path.exists(args.output) and os.listdir(args.output):
        raise ValueError(f"{args.output!r} is not empty")
    settings = TrainSettings(**run["settings"])
    data = run["data"]
    text = read_text(data["text"], "--text")
    if data["val_text"]:
        train_text, val_text = text, read_text(data["val_text"], "--val-text")
    else:
        train_text, val_text = split_text(text, data["val_fraction"])
    for key, part in (("train_sha256", train_text), ("val_sha256", val_text)):
        if text_fingerprint(part) != data[key]:
            raise ValueError(f"the text behind {key} changed since the QAT run")
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    bos = tokenizer.bos_token_id
    batches = TokenBatches(sequences(tokenize(tokenizer, train_text), settings.seq, bos),
                           settings.batch, settings.seed)
    if batches.state() != run["batches"]:  # the same tokens in the same order, or no control
        raise ValueError(f"training batches differ from the QAT run's: {batches.state()} "
                         f"against {run['batches']}")
    val_rows = sequences(tokenize(tokenizer, val_text, "the validation text"), settings.seq, bos)
    return run, data, settings, batches, val_rows, tokenizer


def control(args) -> None:
    import torch

    from mxfp4.io.hf import load_model
    from mxfp4.train.loop import checkpoint_dir, train

    run, data, settings, batches, val_rows, tokenizer = _recorded_run(args)
    model, kind = load_model(args.model_dir, dtype=torch.float32, device="cpu")
    if kind != "float":
        raise ValueError(f"{args.model_dir!r} is a {kind} model, not the float one")
    record = {"command": "float control of " + os.path.abspath(args.qat_dir),
              "settings": run["settings"], "options": {"quantization": "off"}, "data": data,
              "batches": batches.state(), "validation_sequences": len(val_rows)}
    started = time.perf_counter()
    result = train(model, batches, val_rows, settings, out=args.output, run=record,
                   device="cpu", title=f"float control: {args.output}")
    shutil.rmtree(checkpoint_dir(args.output))  # model + optimizer state, several GB
    model.save_pretrained(args.output)
    _finish(args.output, tokenizer, record, result, started, "float control")


def qat_frozen(args) -> None:
    """QAT of the quantized Linear layers only: embeddings, tied head and norms stay frozen.

    Same model, tokens, batch order, schedule and optimizer as a finished `mxfp4 train qat` run
    (read from its run.json), except the peak learning rate (--lr); writes the MXFP4 folder that
    `mxfp4 eval` reads, as `mxfp4 train qat` does.
    """
    import torch

    from mxfp4.io.checkpoint import save_quantized
    from mxfp4.io.hf import load_model
    from mxfp4.train import QATLinear, convert, prepare_qat
    from mxfp4.train.loop import TrainSettings, checkpoint_dir, train

    run, data, settings, batches, val_rows, tokenizer = _recorded_run(args)
    if run["options"]["hadamard"] or run["options"]["include"] or run["options"]["exclude"]:
        raise ValueError("qat-frozen repeats only a plain `mxfp4 train qat` run (all Linear "
                         "layers, no Hadamard)")
    settings = TrainSettings(**{**run["settings"], "lr": args.lr})
    model, kind = load_model(args.model_dir, dtype=torch.float32, device="cpu")
    if kind != "float":
        raise ValueError(f"{args.model_dir!r} is a {kind} model, not the float one")
    teacher = copy.deepcopy(model).requires_grad_(False).eval() if args.distill else None
    summary = prepare_qat(model, scale_rule=run["options"]["scale_rule"],
                          block_size=run["options"]["block_size"])
    for p in model.parameters():  # freeze all, then thaw the QAT layers' master weights
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, QATLinear):
            for p in m.parameters():
                p.requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    options = {**run["options"], "trainable": "QAT Linear layers only", "trainable_parameters":
               trainable, "parameters": total, "distill": bool(args.distill)}
    record = {"command": "qat", "settings": {**run["settings"], "lr": args.lr},
              "options": options, "data": {**data, "qat_layers": len(summary.linears)},
              "batches": batches.state(), "validation_sequences": len(val_rows),
              "repeats": os.path.abspath(args.qat_dir)}
    print(f"qat-frozen: {len(summary.linears)} QAT layers, {trainable:,} of {total:,} "
          f"parameters trainable, lr {args.lr}", flush=True)
    started = time.perf_counter()
    result = train(model, batches, val_rows, settings, out=args.output, run=record,
                   device="cpu", title=f"qat floor, QAT layers only: {args.output}",
                   teacher=teacher)
    shutil.rmtree(checkpoint_dir(args.output))
    convert(model)  # on the CPU reference path: bit-identical to the QAT forward
    save_quantized(model, args.output, overwrite=True)  # replaces the training folder whole
    _finish(args.output, tokenizer, record, result, started, "qat-frozen")


def _eval(path: str) -> dict:
    with open(path) as f:
        e = json.load(f)
    keep = ("perplexity", "mean_nll", "tokens", "windows", "context", "stride", "seconds",
            "weights_bytes", "kind")
    return {k: e[k] for k in keep if k in e}


def _run_summary(folder: str) -> dict:
    with open(os.path.join(folder, "run.json")) as f:
        run = json.load(f)
    with open(os.path.join(folder, "loss.json")) as f:
        log = json.load(f)
    return {"folder": folder, "settings": run["settings"], "options": run["options"],
            "tokens_trained": run["settings"]["steps"] * run["settings"]["batch"]
            * run["settings"]["seq"],
            "train_loss_first": log["train"][0]["loss"], "train_loss_last10_mean":
            sum(r["loss"] for r in log["train"][-10:]) / len(log["train"][-10:]),
            "val": log["val"], "timing": log["timing"]}


def report(args) -> None:
    base, rtn = _eval(args.baseline), _eval(args.rtn)
    gap = rtn["perplexity"] - base["perplexity"]
    out = {"model": "Gemma 3 270M (fp32 folder of benchmarks/accuracy.py)",
           "eval": "mxfp4 eval --text eval.txt --max-tokens 16384 --context 512 --stride 256",
           "baseline": base, "rtn": {**rtn, "label": args.rtn_label}, "arms": {}}
    for label, folder, path in args.arm:
        e = _eval(path)
        out["arms"][label] = {**e, "run": _run_summary(folder),
                              "recovered_fraction": (rtn["perplexity"] - e["perplexity"]) / gap}
    out["notes"] = args.note or []
    with open(args.output, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    for label, arm in out["arms"].items():
        print(f"{label}: perplexity {arm['perplexity']:.3f}, recovered "
              f"{100 * arm['recovered_fraction']:.1f} % of the RTN gap")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("control", help="float fine-tune on the tokens of a QAT run")
    c.add_argument("model_dir")
    c.add_argument("qat_dir", help="a finished `mxfp4 train qat` output folder")
    c.add_argument("-o", "--output", required=True)
    c.set_defaults(func=control)
    f = sub.add_parser("qat-frozen", help="QAT on a QAT run's tokens, only the QAT layers trained")
    f.add_argument("model_dir")
    f.add_argument("qat_dir", help="a finished `mxfp4 train qat` output folder")
    f.add_argument("-o", "--output", required=True)
    f.add_argument("--lr", type=float, required=True, help="peak learning rate")
    f.add_argument("--distill", action="store_true",
                   help="self-distillation from the float model (KL) instead of next-token loss")
    f.set_defaults(func=qat_frozen)
    r = sub.add_parser("report", help="gather eval JSONs into the results file")
    r.add_argument("--baseline", required=True, help="mxfp4 eval --json of the float model")
    r.add_argument("--rtn", required=True, help="mxfp4 eval --json of the RTN checkpoint")
    r.add_argument("--rtn-label", default="rtn-floor")
    r.add_argument("--arm", nargs=3, action="append", required=True,
                   metavar=("LABEL", "RUN_DIR", "EVAL_JSON"))
    r.add_argument("--note", action="append")
    r.add_argument("-o", "--output", required=True)
    r.set_defaults(func=report)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
