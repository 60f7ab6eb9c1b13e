"""mxfp4.models.GptOss: same logits as transformers' GptOssForCausalLM on the same weights, the
KV cache changes nothing, batches of different lengths, sampling, bad inputs, loading.

Tiny random configs on the CPU (the MoE runs its float32 reference there)."""

import copy
import sys
import types

import pytest
import torch

import mxfp4
from mxfp4.models import GptOss, GptOssConfig, gpt_oss
from mxfp4.models.gpt_oss_weights import shapes
from mxfp4.models.rope import yarn_inv_freq
from mxfp4.models.sampling import sample

WINDOW = 8
TINY = dict(vocab_size=96, hidden_size=64, num_hidden_layers=3, num_experts=8, experts_per_token=2,
            intermediate_size=64, head_dim=16, num_attention_heads=4, num_key_value_heads=2,
            sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention", "sliding_attention"])


def _tiny(**changes) -> GptOssConfig:
    return GptOssConfig(**{**TINY, **changes})


def _hf_pair(config: GptOssConfig, seed: int = 0):
    """A random transformers GptOssForCausalLM (float32, every weight bf16-representable, experts
    replaced by their MXFP4 dequantization) and our checkpoint tensors of the same weights."""
    from transformers import GptOssConfig as HFConfig, GptOssForCausalLM

    c = config
    hf_config = HFConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, head_dim=c.head_dim, num_local_experts=c.num_experts,
        num_experts_per_tok=c.experts_per_token, sliding_window=c.sliding_window,
        layer_types=c.layer_types, rms_norm_eps=c.rms_norm_eps, swiglu_limit=c.swiglu_limit,
        rope_parameters=dict(rope_type="yarn", rope_theta=c.rope_theta, factor=c.rope_scaling_factor,
                             beta_fast=c.rope_ntk_beta, beta_slow=c.rope_ntk_alpha, truncate=False,
                             original_max_position_embeddings=c.initial_context_length),
        attn_implementation="eager")
    torch.manual_seed(seed)
    hf = GptOssForCausalLM(hf_config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif "sinks" in name or "embed" in name:
                p.normal_(0, 1)
            elif name.endswith("bias"):
                p.normal_(0, 0.1)
            else:  # matrices: fan-in scaling keeps activations O(1)
                p.normal_(0, (p.shape[-2] if "experts" in name else p.shape[-1]) ** -0.5)
            p.copy_(p.bfloat16())
    t = {"embedding.weight": hf.model.embed_tokens.weight, "norm.weight": hf.model.norm.weight,
         "unembedding.weight": hf.lm_head.weight}
    for i, layer in enumerate(hf.model.layers):
        a, m, p = layer.self_attn, layer.mlp, f"blocks.{i}."
        t |= {p + "attn.norm.weight": layer.input_layernorm.weight,
              p + "attn.qkv.weight": torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
              p + "attn.qkv.bias": torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]),
              p + "attn.sinks": a.sinks, p + "attn.out.weight": a.o_proj.weight,
              p + "attn.out.bias": a.o_proj.bias,
              p + "mlp.norm.weight": layer.post_attention_layernorm.weight,
              p + "mlp.router.weight": m.router.weight, p + "mlp.router.bias": m.router.bias,
              p + "mlp.w1.bias": m.experts.gate_up_proj_bias, p + "mlp.w2.bias": m.experts.down_proj_bias}
        for ours, theirs in (("w1", "gate_up_proj"), ("w2", "down_proj")):
            w = getattr(m.experts, theirs)  # [E, in, out]; ours is [E, out, in], blocks along `in`
            q = mxfp4.quantize(w.detach().transpose(1, 2).contiguous(), axis=-1)
            with torch.no_grad():
                w.copy_(q.dequantize().transpose(1, 2))
            t[p + f"mlp.{ours}.blocks"], t[p + f"mlp.{ours}.scales"] = q.to_gpt_oss()
    return hf, {k: v.detach().clone() for k, v in t.items()}


@pytest.fixture(scope="module")
def pair():
    config = _tiny()
    hf, tensors = _hf_pair(config)
    ours = GptOss.from_tensors(config, tensors.items(), device="cpu", dtype=torch.float32)
    return config, hf, tensors, ours


def _rel(a, b) -> float:
    """Largest error relative to the largest value."""
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def _dist(a, b) -> float:
    """Relative distance in the Frobenius norm."""
    return float((a.float() - b.float()).norm() / b.float().norm())


def _prompt(n, seed=0, vocab=96):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


# -- same logits as transformers ------------------------------------------------------------------
@pytest.mark.parametrize("length", [5, 3 * WINDOW + 1])
def test_float32_logits_match_transformers(pair, length):
    _, hf, _, ours = pair
    ids = torch.stack([_prompt(length, 1), _prompt(length, 2)])
    with torch.no_grad():
        want = hf(ids).logits
    got = ours(ids)
    assert got.shape == (2, length, 96) and got.dtype == torch.float32
    assert _rel(got, want) <= 1e-4
    assert _rel(ours(ids[0]), got[0]) <= 1e-6  # [T] -> [T, V]


def _bf16_errors(config, hf, tensors, device="cpu"):
    """(ours, transformers') relative distance of bf16 logits from the float32 logits, over 32
    prompts shorter and 32 longer than the window."""
    ours = GptOss.from_tensors(config, tensors.items(), device=device, dtype=torch.bfloat16)
    hf, hf16 = copy.deepcopy(hf).to(device), copy.deepcopy(hf).to(device, torch.bfloat16)
    for length in (6, 3 * WINDOW):
        ids = torch.stack([_prompt(length, 1000 * length + j) for j in range(32)]).to(device)
        with torch.no_grad():
            ref, theirs = hf(ids).logits, hf16(ids).logits
        got = ours(ids)
        assert got.dtype == torch.bfloat16
        yield _dist(got, ref), _dist(theirs, ref)


def test_bfloat16_logits_as_close_to_float32_as_transformers(pair):
    config, hf, tensors, _ = pair
    for ours, theirs in _bf16_errors(config, hf, tensors):
        assert ours <= 1.5 * theirs, (ours, theirs)
    # Above, near-tied router logits that bf16 flips (in either model) dominate the error. With
    # two experts far ahead of the rest the routing is fixed and the numerics show: ours do
    # better (float32 softmax and MoE) than transformers' bf16 eager path.
    hf, tensors = copy.deepcopy(hf), dict(tensors)
    with torch.no_grad():
        for i, layer in enumerate(hf.model.layers):
            bias = layer.mlp.router.bias
            bias[:2] += 8
            bias.copy_(bias.bfloat16())
            tensors[f"blocks.{i}.mlp.router.bias"] = bias.detach().clone()
    for ours, theirs in _bf16_errors(config, hf, tensors):
        assert ours <= theirs, (ours, theirs)


def test_logits_match_transformers_with_the_reference_moe_on_the_gpu_when_present(pair):
    """On a GPU (docs/benchmarks/gpu-tests.md) this also checks bf16 with the Triton MoE; on the
    CPU the same float32 comparison runs with the MoE path forced to the reference."""
    config, hf, tensors, _ = pair
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ours = GptOss.from_tensors(config, tensors.items(), device=device, dtype=torch.float32)
    for block in ours.blocks:
        block.mlp.backend = "reference"  # the Triton MoE keeps bf16 intermediates
    ids = torch.stack([_prompt(3 * WINDOW + 1, 1), _prompt(3 * WINDOW + 1, 2)])
    with torch.no_grad():
        want = hf(ids).logits
    assert _rel(ours(ids.to(device)).cpu(), want) <= 1e-4
    if device == "cuda":
        for ours_err, theirs_err in _bf16_errors(config, hf, tensors, "cuda"):  # Triton MoE
            assert ours_err <= 1.5 * theirs_err, (ours_err, theirs_err)


def test_yarn_frequencies_match_transformers():
    from transformers import GptOssConfig as HFConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    c = GptOssConfig.gpt_oss_120b()
    inv_freq, concentration = yarn_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling_factor,
                                            c.rope_ntk_alpha, c.rope_ntk_beta, c.initial_context_length)
    theirs, factor = ROPE_INIT_FUNCTIONS["yarn"](HFConfig())
    assert concentration == pytest.approx(factor) and torch.allclose(inv_freq, theirs, rtol=1e-6)


# -- the cache changes nothing ----------------------------------------------------------------------
def test_cached_decode_gives_full_recompute_logits_step_by_step(pair):
    config, _, _, ours = pair
    total = 5 * WINDOW + 3  # prefill past the window, then 3+ windows of single steps and a chunk
    ids = torch.stack([_prompt(total, 6), _prompt(total, 7)])
    full = ours(ids)
    cache = ours.new_cache(2, total)
    pieces = [(0, WINDOW + 3)] + [(t, t + 1) for t in range(WINDOW + 3, total - 3)] + [(total - 3, total)]
    for a, b in pieces:
        got = ours(ids[:, a:b], cache=cache)
        assert _rel(got, full[:, a:b]) <= 1e-5, (a, b)
    assert cache.length == total and cache.layers[0].k.shape[2] == WINDOW  # sliding layers: a ring
    assert cache.layers[1].k.shape[2] == total


def test_query_chunks_and_caches_without_a_ring_change_nothing(pair, monkeypatch):
    _, _, _, ours = pair
    ids = _prompt(3 * WINDOW + 1, 17)
    whole = ours(ids)
    rows, real, calls = 5, gpt_oss.attention, []
    monkeypatch.setattr(gpt_oss, "_SCORES_BUDGET", 4 * 2 * 2 * len(ids) * rows)  # [KV, G, T, S] fp32
    monkeypatch.setattr(gpt_oss, "attention", lambda q, *args: calls.append(q.shape[1]) or real(q, *args))
    assert _rel(ours(ids), whole) <= 1e-6
    assert sorted(set(calls)) == [rows, len(ids)]  # each layer: 25 queries in 5 chunks of 5
    assert not ours.new_cache(1, WINDOW).layers[0].ring  # the window holds the whole cache
    assert torch.equal(ours.generate(ids[:4], WINDOW - 4, stop=()),
                       ours.generate(ids[:4], WINDOW - 4, stop=(), use_cache=False))


def test_greedy_generation_same_with_and_without_cache(pair):
    _, _, _, ours = pair
    ids = torch.stack([_prompt(4, 8), _prompt(4, 9)])
    cached = ours.generate(ids, 2 * WINDOW + 2, stop=())
    recomputed = ours.generate(ids, 2 * WINDOW + 2, stop=(), use_cache=False)
    assert cached.shape == (2, 4 + 2 * WINDOW + 2) and torch.equal(cached[:, :4], ids)
    assert torch.equal(cached, recomputed)


def test_batch_of_different_lengths_matches_each_prompt_alone(pair):
    config, _, _, ours = pair
    prompts = [_prompt(n, 10 + n) for n in (3, WINDOW + 5, 7)]
    ids, mask = torch.full((3, WINDOW + 5), config.pad_token_id), torch.zeros(3, WINDOW + 5, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, -len(p):], mask[b, -len(p):] = p, 1
    batched = ours(ids, attention_mask=mask)
    for b, p in enumerate(prompts):
        assert _rel(batched[b, -len(p):], ours(p)) <= 1e-5
    together = ours.generate([p.tolist() for p in prompts], 2 * WINDOW, stop=())
    assert torch.equal(together, ours.generate(ids, 2 * WINDOW, stop=(), attention_mask=mask))
    for b, p in enumerate(prompts):
        alone = ours.generate(p, 2 * WINDOW, stop=())
        assert torch.equal(together[b, -len(alone):], alone)


def test_stop_tokens_end_a_row_and_pad_it(pair):
    config, _, _, ours = pair
    prompts = torch.stack([_prompt(5, 11), _prompt(5, 12)])
    free = ours.generate(prompts, 6, stop=())
    stop = int(free[0, 5 + 1])  # row 0's second new token
    out = ours.generate(prompts, 6, stop=[stop])
    first = int((free[0, 5:] == stop).nonzero()[0])
    assert torch.equal(out[0, :5 + first + 1], free[0, :5 + first + 1])
    assert (out[0, 5 + first + 1:] == config.pad_token_id).all()
    alone = ours.generate(prompts[0], 6, stop=[stop])
    assert alone.shape == (5 + first + 1,)  # a finished batch ends early


def test_stream_yields_the_generated_tokens(pair):
    _, _, _, ours = pair
    ids = _prompt(6, 13)[None]
    steps = list(ours.stream(ids, 5, stop=()))
    assert len(steps) == 5 and steps[0].shape == (1,)
    assert torch.equal(torch.stack(steps, dim=1), ours.generate(ids, 5, stop=())[:, 6:])


# -- sampling ---------------------------------------------------------------------------------------
def test_sampling_is_reproducible_with_a_seed(pair):
    _, _, _, ours = pair
    ids = _prompt(5, 14)
    a = ours.generate(ids, 12, temperature=1.0, seed=3, stop=())
    assert torch.equal(a, ours.generate(ids, 12, temperature=1.0, seed=3, stop=()))
    assert not torch.equal(a, ours.generate(ids, 12, temperature=1.0, seed=4, stop=()))
    # a nucleus holding only the most likely token is greedy
    assert torch.equal(ours.generate(ids, 6, temperature=1.0, top_p=1e-6, seed=5, stop=()),
                       ours.generate(ids, 6, stop=()))


def test_top_p_draws_only_from_the_nucleus():
    probs = torch.tensor([0.05, 0.4, 0.3, 0.15, 0.1])
    logits = probs.log().expand(4000, -1)
    g = torch.Generator().manual_seed(0)
    drawn = sample(logits, temperature=1.0, top_p=0.65, generator=g)  # nucleus: 0.4 + 0.3
    assert set(drawn.tolist()) == {1, 2}
    assert abs((drawn == 1).float().mean().item() - 0.4 / 0.7) < 0.03
    everything = sample(logits, temperature=1.0, top_p=1.0, generator=g)
    assert set(everything.tolist()) == {0, 1, 2, 3, 4}


# -- bad inputs ---------------------------------------------------------------------------------------
def test_bad_input_ids_get_clear_errors(pair):
    config, _, _, ours = pair
    with pytest.raises(TypeError, match="integer tensor"):
        ours(torch.zeros(4))
    with pytest.raises(TypeError, match="LongTensor"):
        ours([1, 2, 3])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ours(torch.tensor([1, 96]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ours(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match=r"\[T\] or \[B, T\]"):
        ours(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[T\] or \[B, T\]"):
        ours(torch.zeros(1, 0, dtype=torch.long))
    cache = ours.new_cache(1, 6)
    ours(torch.tensor([[1, 2, 3, 4]]), cache=cache)
    with pytest.raises(ValueError, match="longer than the cache"):
        ours(torch.tensor([[1, 2, 3]]), cache=cache)
    with pytest.raises(ValueError, match="longer than max_len"):
        ours.generate(torch.tensor([1, 2, 3]), 8, max_len=10)
    with pytest.raises(ValueError, match="left padding"):
        ours.generate(torch.tensor([[1, 2, 3]]), 2, attention_mask=torch.tensor([[1, 1, 0]]))
    with pytest.raises(ValueError, match="top_p"):
        ours.generate(torch.tensor([1, 2]), 2, temperature=1.0, top_p=0.0)


# -- building and loading -------------------------------------------------------------------------------
def test_from_config_random_model_is_reproducible_with_mxfp4_experts():
    config = _tiny(num_hidden_layers=2, layer_types=None)
    a = GptOss.from_config(config, device="cpu", seed=1)
    b = GptOss.from_config(config, device="cpu", seed=1)
    assert config.layer_types == ["sliding_attention", "full_attention"]
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    moe = a.blocks[1].mlp.moe
    assert moe.w1_codes.dtype == torch.uint8 and moe.w1.shape == (8, 128, 64)
    assert a.embedding.weight.dtype == torch.bfloat16 and moe.router_weight.dtype == torch.bfloat16
    assert not any(p.is_meta for p in a.state_dict().values())
    assert a(torch.tensor([1, 2, 3])).shape == (3, 96)


def test_presets_have_the_published_numbers():
    small, big = GptOssConfig.gpt_oss_20b(), GptOssConfig.gpt_oss_120b()
    assert (small.num_hidden_layers, small.num_experts) == (24, 32)
    assert (big.num_hidden_layers, big.num_experts) == (36, 128)
    for c in (small, big):
        assert (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads,
                c.head_dim, c.vocab_size, c.sliding_window, c.experts_per_token) == \
            (2880, 2880, 64, 8, 64, 201088, 128, 4)
        assert (c.rope_theta, c.rope_scaling_factor, c.rope_ntk_alpha, c.rope_ntk_beta,
                c.initial_context_length, c.swiglu_limit, c.rms_norm_eps) == \
            (150000, 32, 1, 32, 4096, 7.0, 1e-5)
        assert c.layer_types[:2] == ["sliding_attention", "full_attention"]
    with pytest.raises(ValueError, match="multiples of 32"):
        _tiny(hidden_size=48)


def test_from_tensors_names_missing_unexpected_and_misshapen_tensors(pair):
    config, _, tensors, _ = pair

    def load(items):
        return GptOss.from_tensors(config, items, device="cpu", dtype=torch.float32)

    items = list(tensors.items())
    with pytest.raises(ValueError, match=r"missing, first \['blocks.2.attn.sinks'\]"):
        load([(n, t) for n, t in items if n != "blocks.2.attn.sinks"])
    with pytest.raises(ValueError, match="unexpected tensor 'blocks.3.attn.sinks'"):
        load(items + [("blocks.3.attn.sinks", tensors["blocks.2.attn.sinks"])])
    with pytest.raises(ValueError, match="'norm.weight' arrived twice"):
        load(items + [("norm.weight", tensors["norm.weight"])])
    with pytest.raises(ValueError, match=r"'blocks.0.mlp.w2.scales' has shape \(8, 64\)"):
        load([(n, t[..., 0] if n == "blocks.0.mlp.w2.scales" else t) for n, t in items])
    with pytest.raises(ValueError, match="'blocks.1.mlp.w1.blocks' has dtype torch.float32"):
        load([(n, t.float() if n == "blocks.1.mlp.w1.blocks" else t) for n, t in items])
    assert set(tensors) == set(shapes(config))


def test_from_pretrained_streams_the_checkpoint_reader(pair, monkeypatch):
    """The agreed reader interface, faked: read_config's dict (Hugging Face style token ids
    included) and iter_tensors' stream of canonical names with progress(done, total)."""
    config, _, tensors, ours = pair
    seen, reports = {}, []

    def read_config(path):
        fields = {k: v for k, v in vars(config).items() if k not in ("eos_token_ids", "pad_token_id")}
        return {**fields, "eos_token_id": [5, 6], "pad_token_id": None}

    def iter_tensors(path, values, *, device="cpu", progress=None):
        seen.update(path=path, device=device, layers=values["num_hidden_layers"])
        for done, (n, t) in enumerate(tensors.items(), 1):
            yield n, t.bfloat16() if t.is_floating_point() else t  # as shipped
            progress(done, len(tensors))

    from mxfp4.io.gpt_oss_checkpoint import canonical_shapes

    fake = types.ModuleType("mxfp4.io.gpt_oss_checkpoint")
    fake.read_config, fake.iter_tensors = read_config, iter_tensors
    fake.canonical_shapes = canonical_shapes  # (the model's own table of names comes from there)
    monkeypatch.setitem(sys.modules, "mxfp4.io.gpt_oss_checkpoint", fake)
    model = GptOss.from_pretrained("ckpt", device="cpu", dtype=torch.float32,
                                   progress=lambda done, total: reports.append((done, total)))
    assert seen == dict(path="ckpt", device="cpu", layers=3)
    assert reports[-1] == (len(tensors), len(tensors))
    assert model.config.eos_token_ids == (5, 6) and model.config.pad_token_id == 0
    ids = _prompt(7, 15)
    assert torch.equal(model(ids), ours(ids))


def test_from_pretrained_reads_a_hugging_face_export(pair, tmp_path):
    from mxfp4.io.gpt_oss_hf import save_gpt_oss_hf

    config, hf, _, ours = pair
    save_gpt_oss_hf(copy.deepcopy(hf), tmp_path / "ckpt")  # experts re-quantize to the same values
    model = GptOss.from_pretrained(tmp_path / "ckpt", device="cpu", dtype=torch.float32)
    assert model.config.layer_types == config.layer_types
    ids = _prompt(9, 16)
    assert _rel(model(ids), ours(ids)) <= 1e-6
