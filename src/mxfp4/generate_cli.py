"""`mxfp4 generate`: load a GPT-OSS checkpoint folder and stream text from a prompt."""

from __future__ import annotations

import argparse
import os
import sys
import time


def register(sub) -> None:
    g = sub.add_parser("generate", help="generate text with a GPT-OSS checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Load a GPT-OSS folder (Hugging Face or original layout, MXFP4 "
                                   "experts) with mxfp4.models.GptOss and stream the text it "
                                   "generates from a prompt, using the folder's own tokenizer.")
    g.add_argument("model_dir", metavar="MODEL_DIR", help="GPT-OSS checkpoint folder")
    g.add_argument("--prompt", required=True, help="the prompt text")
    g.add_argument("--chat", action="store_true",
                   help="wrap the prompt in the folder's chat template (as a user message)")
    g.add_argument("--max-new-tokens", type=int, default=128, help="tokens to generate at most")
    g.add_argument("--temperature", type=float, default=0.0, help="0 picks the likeliest token")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    g.add_argument("--seed", type=int, default=None, help="sampling seed (None: random)")
    g.add_argument("--device", default="auto", help="auto: cuda when present, else cpu")
    g.add_argument("--dtype", choices=("bfloat16", "float32", "float16"), default="bfloat16",
                   help="dtype of the non-expert weights (the experts stay MXFP4)")
    g.set_defaults(func=run_generate)


def check_args(args) -> None:
    """Refuse bad arguments before the (slow) load."""
    if not os.path.isdir(args.model_dir):
        raise FileNotFoundError(f"model folder {args.model_dir!r} does not exist")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
    if not args.prompt:
        raise ValueError("--prompt is empty")


def prompt_ids(tokenizer, text: str, chat: bool) -> list[int]:
    if not chat:
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("--chat needs a chat template, and this folder's tokenizer has none")
    out = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                        add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


class TextStream:
    """Prints the text of a growing token list as it grows (decoding the whole list each time,
    so that tokens which only make sense together, such as split UTF-8 bytes, come out right)."""

    def __init__(self, tokenizer, out=None):
        self.tokenizer, self.out, self.ids, self.shown = tokenizer, out or sys.stdout, [], ""

    def __call__(self, token_id: int) -> None:
        self.ids.append(int(token_id))
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the next token
            return
        self.out.write(text[len(self.shown):])
        self.out.flush()
        self.shown = text


def run_generate(args) -> int:
    import torch
    from transformers import AutoTokenizer

    from .models import GptOss
    from .models_cli import resolve_device

    check_args(args)
    device, _ = resolve_device(argparse.Namespace(device=args.device, dtype="auto"))
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    ids = prompt_ids(tokenizer, args.prompt, args.chat)
    if not ids:
        raise ValueError("the prompt has no tokens")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = GptOss.from_pretrained(args.model_dir, device=device, dtype=getattr(torch, args.dtype))
    stop = set(model.config.eos_token_ids)
    stop |= {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    text = TextStream(tokenizer)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = first = time.perf_counter()
    for i, token in enumerate(model.stream(torch.tensor(ids, device=device), args.max_new_tokens,
                                           temperature=args.temperature, top_p=args.top_p,
                                           seed=args.seed, stop=sorted(stop))):
        text(token[0].item())  # .item() waits for the GPU
        if i == 0:
            first = time.perf_counter()
    sync()
    end = time.perf_counter()
    print()
    prefill, decode, steps = first - start, end - first, max(len(text.ids) - 1, 0)
    peak = (f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda"
            else "n/a (cpu)")
    print(f"prefill {len(ids)} tokens in {prefill:.3f} s ({len(ids) / prefill:,.1f} tokens/s); "
          f"decode {steps} tokens in {decode:.3f} s "
          f"({steps / decode if decode else float('nan'):,.1f} tokens/s); peak GPU memory {peak}",
          file=sys.stderr)
    return 0
