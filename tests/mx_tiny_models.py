"""Tiny randomly initialised Hugging Face models for the model-level tests (no download)."""

from __future__ import annotations

import torch


def tiny_gemma3(seed: int = 0, layers: int = 2):
    """A Gemma 3 text model with Gemma's features (tied scaled embeddings, sliding + full
    attention) and every Linear input size a multiple of 32."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=8,
        max_position_embeddings=256, layer_types=["sliding_attention", "full_attention"][:layers],
        tie_word_embeddings=True)
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # random init uses std 0.02 everywhere; make the weights less uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(1 + 3 * torch.rand(p.shape[0], 1))
    return model


def tiny_tokens(batch: int = 2, length: int = 24, seed: int = 1, vocab: int = 256) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (batch, length), generator=g)


def char_tokenizer():
    """A character-level fast tokenizer (ids < 100) with BOS, so the CLI can read text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    for i in range(32, 127):
        vocab[chr(i)] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>", pad_token="<pad>")


def save_tiny_folder(path, seed: int = 0):
    """A Hugging Face model folder (safetensors, config, tokenizer) of tiny_gemma3."""
    model = tiny_gemma3(seed)
    model.save_pretrained(path)
    char_tokenizer().save_pretrained(path)
    return model


def write_text(path, words: int = 3000, seed: int = 0):
    import random

    rng = random.Random(seed)
    vocab = ("the state of our union is strong and we will work together for the people of "
             "this nation in peace and freedom").split()
    with open(path, "w") as f:
        f.write(" ".join(rng.choice(vocab) for _ in range(words)))
    return path


def tiny_gpt_oss(experts: int = 8, all_weights: bool = False, dtype=torch.float32, **config):
    """A transformers GptOssForCausalLM: 2 layers, hidden 64, top-2, head_dim 32, 2 query heads /
    1 KV head, window 8. Experts ~ N(0, 0.05); with all_weights every other parameter ~ N(0, 0.5)
    too (so that sinks and biases are not all zero). `config` overrides GptOssConfig fields."""
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(0)
    config = GptOssConfig(**{**dict(
        vocab_size=128, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, num_local_experts=experts,
        num_experts_per_tok=2, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"]), **config})
    model = GptOssForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "experts" in name:
                p.normal_(0, 0.05)
            elif all_weights:
                p.normal_(0, 0.5)
    return model.to(dtype)
