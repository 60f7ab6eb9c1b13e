"""The training loop behind `mxfp4 train`: AdamW, warm-up then cosine learning rate, gradient
clipping, bf16 autocast on CUDA, validation loss every N steps, and a checkpoint every N steps
from which an interrupted run resumes on the same loss curve.

A run lives in an output folder OUT. Its checkpoint is the folder OUT/checkpoint: state.pt
(model, optimizer, step, loss log, RNG states), run.json (the settings, which a resumed run
keeps), loss.json, loss.png and whatever the caller adds (the tokenizer). Each checkpoint is
written whole beside the old one and swapped in by one rename (mxfp4.io.output_folder), so an
interrupt leaves the previous checkpoint intact.

Resuming replays exactly: batch `step` is a pure function of (seed, step) (data.TokenBatches),
the learning rate a function of the step, recipe layers draw their random numbers from the step
(set_step), and the torch RNG states are restored.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..io.output_folder import staged_folder
from .recipe_linear import set_step

CHECKPOINT = "checkpoint"


@dataclass
class TrainSettings:
    steps: int = 200
    lr: float = 3e-4
    warmup: int = 20
    min_lr: float = 0.1  # the cosine ends at min_lr · lr
    weight_decay: float = 0.1
    clip: float = 1.0
    batch: int = 8
    seq: int = 256
    eval_every: int = 50
    val_batches: int = 8  # batches of validation sequences per evaluation (at most)
    checkpoint_every: int = 100
    seed: int = 0

    def check(self) -> None:
        for name in ("steps", "batch", "seq", "eval_every", "val_batches", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not 0 <= self.warmup <= self.steps:
            raise ValueError(f"--warmup must be between 0 and --steps {self.steps}, got {self.warmup}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.min_lr <= 1:
            raise ValueError(f"--min-lr must be a fraction of --lr between 0 and 1, got {self.min_lr}")
        if self.clip <= 0 or self.weight_decay < 0:
            raise ValueError("--clip must be positive and --weight-decay not negative")


def lr_at(step: int, s: TrainSettings) -> float:
    """Learning rate of step `step` (0-based): linear warm-up, then cosine down to min_lr·lr."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    span = max(1, s.steps - s.warmup)
    progress = min(1.0, (step - s.warmup) / span)
    return s.lr * (s.min_lr + (1 - s.min_lr) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms, biases or scales)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": s.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=s.lr, betas=(0.9, 0.95))


def logits_of(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits [batch, seq, vocab] of a plain LM (forward(ids) -> logits) or a Hugging Face model."""
    if "use_cache" in inspect.signature(model.forward).parameters:
        return model(input_ids=ids, use_cache=False).logits
    out = model(ids)
    return out.logits if hasattr(out, "logits") else out


def next_token_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy of predicting ids[:, 1:] from ids[:, :-1], in float32."""
    logits = logits_of(model, ids[:, :-1])
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def distillation_loss(model: nn.Module, teacher: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean KL(teacher ‖ model) of the next-token distributions after ids[:, :-1], in float32.

    Self-distillation for QAT: the quantized model learns to predict what the float model
    predicts on the training text, rather than the text itself, so fine-tuning repairs the
    rounding without pulling the model towards the training text's topic."""
    logits = logits_of(model, ids[:, :-1]).float()
    with torch.no_grad():
        target = logits_of(teacher, ids[:, :-1]).float()
    vocab = min(logits.shape[-1], target.shape[-1])  # padded embedding rows are not tokens
    return F.kl_div(F.log_softmax(logits[..., :vocab].reshape(-1, vocab), dim=-1),
                    F.log_softmax(target[..., :vocab].reshape(-1, vocab), dim=-1),
                    log_target=True, reduction="batchmean")


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def validation_loss(model: nn.Module, rows: torch.Tensor, batch: int, device) -> float:
    """Mean next-token loss over `rows` (every target counted once), in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for chunk in rows.split(batch):
            ids = chunk.to(device)
            with _autocast(device):
                logits = logits_of(model, ids[:, :-1])
            total += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                           ids[:, 1:].reshape(-1), reduction="sum"))
            count += ids[:, 1:].numel()
    finally:
        model.train(was_training)
    return total / count


# -- checkpoints -------------------------------------------------------------------------------

def checkpoint_dir(out: str) -> str:
    return os.path.join(out, CHECKPOINT)


def read_run(out: str) -> dict:
    """The run.json of the checkpoint in `out` (what --resume continues)."""
    path = os.path.join(checkpoint_dir(out), "run.json")
    if not os.path.isfile(path):
        raise ValueError(f"{out!r} has no checkpoint to resume ({CHECKPOINT}/run.json is "
                         f"missing); start a new run without --resume")
    with open(path) as f:
        return json.load(f)


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_json(path: str, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def write_log(folder: str, log: dict, title: str) -> None:
    """loss.json and loss.png into `folder` (a staged folder: no atomic write needed here)."""
    from .plot import plot_losses

    write_json(os.path.join(folder, "loss.json"), log)
    plot_losses({title: log}, os.path.join(folder, "loss.png"), title)


def save_checkpoint(out: str, model, optimizer, step: int, log: dict, run: dict, title: str,
                    extra=None) -> None:
    """Write OUT/checkpoint whole and swap it in (the previous one stays until then)."""
    with staged_folder(checkpoint_dir(out), overwrite=True) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "step": step, "log": log, "rng": _rng_state()}, os.path.join(tmp, "state.pt"))
        write_json(os.path.join(tmp, "run.json"), run)
        write_log(tmp, log, title)
        if extra is not None:
            extra(tmp)


def load_checkpoint(out: str) -> dict:
    path = os.path.join(checkpoint_dir(out), "state.pt")
    if not os.path.isfile(path):
        raise ValueError(f"{out!r} has no checkpoint state ({CHECKPOINT}/state.pt is missing)")
    return torch.load(path, map_location="cpu", weights_only=True)


# -- the loop ------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    log: dict
    step: int  # steps done
    finished: bool  # reached settings.steps (or diverged)


def train(model: nn.Module, batches, val_rows: torch.Tensor, settings: TrainSettings, *,
          out: str, run: dict, device, resume: bool = False, stop_at: int | None = None,
          title: str = "training", console=None, extra=None,
          teacher: nn.Module | None = None) -> TrainResult:
    """Train `model` (already on `device`) for settings.steps steps from `batches`
    (data.TokenBatches), checkpointing into OUT/checkpoint; return the loss log.

    resume: continue from the checkpoint in `out`. stop_at: stop after that step (a checkpoint
    is written) without finishing, to continue later with resume. extra(folder) adds files to
    each checkpoint. A non-finite loss stops the run (log["diverged_at"]). teacher: train on
    distillation_loss from this frozen model instead of the text's next tokens (the validation
    loss stays the cross entropy on the text).
    """
    settings.check()
    device = torch.device(device)
    optimizer = make_optimizer(model, settings)
    log = {"title": title, "tokens_per_step": settings.batch * settings.seq,
           "settings": asdict(settings), "train": [], "val": [], "timing": []}
    step = 0
    if resume:
        state = load_checkpoint(out)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, log = int(state["step"]), state["log"]
        _set_rng_state(state["rng"])
    else:
        torch.manual_seed(settings.seed)
    end = settings.steps if stop_at is None else min(settings.steps, max(stop_at, step))
    tokens = settings.batch * settings.seq
    model.train()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    started, first, seconds = time.perf_counter(), step, 0.0

    def checkpoint():
        save_checkpoint(out, model, optimizer, step, log, run, title, extra)

    with _progress(console) as bar:
        task = bar.add_task(title, total=settings.steps, completed=step, info="")
        while step < end and "diverged_at" not in log:
            t0 = time.perf_counter()
            set_step(model, step)  # recipe layers draw this step's random numbers
            lr = lr_at(step, settings)
            for group in optimizer.param_groups:
                group["lr"] = lr
            ids = batches.batch_at(step).to(device, non_blocking=True)
            with _autocast(device):
                loss = (next_token_loss(model, ids) if teacher is None
                        else distillation_loss(model, teacher, ids))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(params, settings.clip))
            value = loss.item()
            if not math.isfinite(value):
                log["diverged_at"] = step + 1
            else:
                optimizer.step()
            step += 1
            seconds += time.perf_counter() - t0
            log["train"].append({"step": step, "loss": value, "lr": lr, "grad_norm": norm})
            if step % settings.eval_every == 0 or step == settings.steps:
                val = validation_loss(model, val_rows[:settings.val_batches * settings.batch],
                                      settings.batch, device)
                log["val"].append({"step": step, "loss": val})
            val_text = f" val {log['val'][-1]['loss']:.4f}" if log["val"] else ""
            bar.update(task, completed=step, info=f"loss {value:.4f}{val_text} "
                       f"{tokens * (step - first) / max(seconds, 1e-9):,.0f} tok/s")
            if step % settings.checkpoint_every == 0 and step < end:
                checkpoint()
        if step > first:
            log["timing"].append({"steps": [first + 1, step], "train_seconds": round(seconds, 3),
                                  "wall_seconds": round(time.perf_counter() - started, 3),
                                  "tokens_per_s": round(tokens * (step - first) / max(seconds, 1e-9)),
                                  "device": str(device)})
        checkpoint()
    return TrainResult(log, step, step >= settings.steps or "diverged_at" in log)


def _progress(console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)
