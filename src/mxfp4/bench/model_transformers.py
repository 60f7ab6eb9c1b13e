"""The transformers rows of `mxfp4 bench model`: GptOssForCausalLM of the same shape, in bf16.

Random weights made directly on the device in bf16 (the 20b shape is about 42 GB in bf16; a
float32 copy first would not fit), its default attention and experts implementations, timed
through `generate` (greedy, exactly n new tokens) with a static cache where the installed version
takes one: decode ms per token = (t(n2) - t(n1)) / (n2 - n1) from two generate lengths after the
same `--context`-token prompt; prefill = generate with one new token after a `--prompt`-token
prompt. Each generate is run once to warm up (compilation, if transformers compiles), then
HF_RUNS times; medians. RoPE uses transformers' defaults, which are gpt-oss's.
"""

from __future__ import annotations

import statistics
import time

import torch

HF_RUNS = 3
HF_FIRST = 4  # new tokens of the shorter generate
HF_DECODE_STEPS = 32  # the longer one makes at most this many more


def hf_config(c):
    """transformers.GptOssConfig with the sizes of our GptOssConfig `c`."""
    from transformers import GptOssConfig as HFConfig

    return HFConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                    intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers,
                    num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
                    head_dim=c.head_dim, num_local_experts=c.num_experts,
                    num_experts_per_tok=c.experts_per_token, sliding_window=c.sliding_window,
                    layer_types=list(c.layer_types), rms_norm_eps=c.rms_norm_eps,
                    swiglu_limit=c.swiglu_limit, pad_token_id=c.pad_token_id,
                    eos_token_id=list(c.eos_token_ids) or None, tie_word_embeddings=False)


def build(c, device, seed: int = 0):
    """A random GptOssForCausalLM of config `c`, its weights created on `device` in bf16."""
    from transformers import GptOssForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = GptOssForCausalLM._from_config(hf_config(c), dtype=torch.bfloat16)
    return model.eval()


class Generate:
    """Timed greedy generate calls of exactly n new tokens, with a static cache when it works."""

    def __init__(self, model, max_cache_len: int):
        from transformers import GenerationConfig

        self.model, self.static, self.max_cache_len = model, True, max_cache_len
        self.fixed_len = hasattr(GenerationConfig(), "max_cache_len")  # one cache size: one compile
        self.fallback = ""

    def __call__(self, ids: torch.Tensor, n: int) -> float:
        """Wall-clock ms of one generate of n tokens after ids [B, T] (device synchronised)."""
        kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False,
                      attention_mask=torch.ones_like(ids), pad_token_id=self.model.config.pad_token_id)
        if self.static:
            kwargs["cache_implementation"] = "static"
            if self.fixed_len:
                kwargs["max_cache_len"] = self.max_cache_len
        sync = torch.cuda.synchronize if ids.device.type == "cuda" else (lambda: None)
        sync()
        t = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(ids, **kwargs)
        sync()
        ms = (time.perf_counter() - t) * 1e3
        if out.shape != (ids.shape[0], ids.shape[1] + n):
            raise RuntimeError(f"transformers generate made {out.shape[1] - ids.shape[1]} tokens, "
                               f"asked for {n}")
        return ms

    def warm(self, ids: torch.Tensor, lengths, log) -> None:
        """One call per length (compiles, where transformers compiles); if the static cache fails
        (a version without one for this model, or its compilation), the default cache instead."""
        try:
            for n in lengths:
                self(ids, n)
        except Exception as err:
            if not self.static:
                raise
            self.static = False
            self.fallback = f"static cache failed ({type(err).__name__}: {str(err)[:160]}); default cache"
            log(f"transformers: {self.fallback}")
            for n in lengths:
                self(ids, n)

    def describe(self) -> str:
        m = self.model
        experts = getattr(m.config, "_experts_implementation", None) or "default"
        return (f"transformers {_version()}, {'static' if self.static else 'default'} cache, "
                f"attention {m.config._attn_implementation}, experts {experts}"
                + (f"; {self.fallback}" if self.fallback else ""))


def _version() -> str:
    import transformers

    return transformers.__version__


def bench_transformers(name: str, c, args, log) -> list[dict]:
    """The decode row (batch 1, `--context`) and the prefill row (batch 1, `--prompt`) of
    transformers for shape `name`; the model is freed before returning."""
    from .model import Timer, _memory_start, peak_gb

    dev = args.device
    _memory_start(dev)
    t = time.perf_counter()
    model = build(c, dev)
    timer = Timer(dev)
    timer.sync()
    log(f"{name}, transformers: built in {time.perf_counter() - t:.1f} s"
        + (f", {peak_gb(dev):.1f} GB" if timer.cuda else ""))
    n1, n2 = HF_FIRST, HF_FIRST + min(args.steps, HF_DECODE_STEPS)
    g = torch.Generator(device=dev).manual_seed(0)
    gen = Generate(model, args.context + n2)
    base = {"model": name, "variant": "transformers (bf16)", "batch": 1}
    rows = []
    try:
        ids = torch.randint(c.vocab_size, (1, args.context), generator=g, device=dev)
        t = time.perf_counter()
        gen.warm(ids, (n1, n2), log)
        log(f"transformers: warm-up (compilation included) {time.perf_counter() - t:.1f} s")
        short, long = [], []
        for _ in range(HF_RUNS):
            short.append(gen(ids, n1))
            long.append(gen(ids, n2))
        ms = (statistics.median(long) - statistics.median(short)) / (n2 - n1)
        if ms > 0:
            rows.append(dict(base, path="decode", context=args.context, ms=ms, tokens_per_s=1e3 / ms))
        else:  # the two lengths took the same time within their noise: no decode time to give
            rows.append(dict(base, path="decode", context=args.context,
                             error=f"{n2} tokens took no longer than {n1} ({long} vs {short} ms)"))
        ids = torch.randint(c.vocab_size, (1, args.prompt), generator=g, device=dev)
        gen.max_cache_len = args.prompt + 1  # (a prefill compiles nothing: only decode steps do)
        gen(ids, 1)
        ms = statistics.median(gen(ids, 1) for _ in range(HF_RUNS))
        rows.append(dict(base, path="prefill", prompt=args.prompt, ms=ms,
                         tokens_per_s=args.prompt * 1e3 / ms))
    except torch.cuda.OutOfMemoryError as err:
        rows.append(dict(base, path="decode" if not rows else "prefill",
                         error=f"out of memory: {str(err).splitlines()[0][:200]}"))
    for r in rows:
        r.update(peak_GB=peak_gb(dev), config=gen.describe())
        log(f"{name} transformers {r['path']}: " + (r.get("error") or f"{r['ms']:.2f} ms, "
                                                     f"{r['tokens_per_s']:,.0f} tokens/s"))
    del model, gen
    _memory_start(dev)
    return rows
