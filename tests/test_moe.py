"""mxfp4.nn.MoE: GPT-OSS semantics of the reference path, constructors, routing, bad inputs."""

import pytest
import torch

from moe_oracle import moe_float64, random_moe, rel_err
from mxfp4 import quantize
from mxfp4.nn import MoE
from mxfp4.nn.moe import moe_reference, route_reference, swiglu


@pytest.mark.parametrize("T", [1, 7, 33])
def test_reference_matches_float64(T):
    m = random_moe(seed=T)
    x = torch.randn(T, m.hidden_size, generator=torch.Generator().manual_seed(T)).bfloat16()
    out = m(x, backend="reference")
    assert out.dtype == torch.bfloat16 and out.shape == x.shape
    assert rel_err(out, moe_float64(m, x)) <= 1e-2


def test_reference_float32_is_tight():
    m = random_moe(seed=3)
    x = torch.randn(9, m.hidden_size, generator=torch.Generator().manual_seed(1))
    assert rel_err(m(x), moe_float64(m, x)) <= 1e-5  # CPU "auto" is the reference


def test_batched_input_shape():
    m = random_moe(seed=4)
    x = torch.randn(2, 5, m.hidden_size).bfloat16()
    out = m(x)
    assert out.shape == (2, 5, m.hidden_size)
    assert torch.equal(out.reshape(10, -1), m(x.reshape(10, -1)))


def test_swiglu_matches_gpt_oss_formula():
    h = torch.tensor([[9.0, -9.0, -3.0, 0.5, 2.0, 8.0]])  # (gate, lin) pairs
    a = swiglu(h)
    gate = torch.tensor([7.0, -3.0, 2.0])
    lin = torch.tensor([-7.0, 0.5, 7.0])
    assert torch.allclose(a[0], gate * torch.sigmoid(1.702 * gate) * (lin + 1))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_top_k_and_softmax(k):
    m = random_moe(E=16, k=k, seed=k)
    x = torch.randn(6, m.hidden_size)
    ids, w = m.route(x)
    logits = x @ m.router_weight.float().T + m.router_bias.float()
    top = logits.topk(k, dim=-1)
    assert torch.equal(ids, top.indices)
    assert torch.allclose(w, torch.softmax(top.values, dim=-1))
    assert torch.allclose(w.sum(-1), torch.ones(6))
    assert rel_err(m(x), moe_float64(m, x)) <= 1e-5


def test_ties_pick_the_lower_expert():
    m = random_moe(E=8, k=2, seed=5)
    m.router_weight[:] = 0  # logits = bias: experts 2 and 6 tie for first place
    m.router_bias[:] = torch.tensor([0, 0, 3, 0, 0, 0, 3, 0], dtype=torch.bfloat16)
    ids, w = m.route(torch.randn(4, m.hidden_size))
    assert ids.tolist() == [[2, 6]] * 4
    assert torch.allclose(w, torch.full((4, 2), 0.5))
    m.router_bias[:] = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1], dtype=torch.bfloat16)
    ids, _ = m.route(torch.randn(3, m.hidden_size))
    assert ids.tolist() == [[0, 1]] * 3


def test_every_token_to_one_expert_and_unused_experts():
    m = random_moe(E=16, k=1, seed=6)
    m.router_bias[:] = 0
    m.router_bias[11] = 100
    x = torch.randn(10, m.hidden_size)
    ids, w = m.route(x)
    assert (ids == 11).all() and torch.equal(w, torch.ones(10, 1))
    assert rel_err(m(x), moe_float64(m, x)) <= 1e-5


def test_many_experts_small_dims():
    m = random_moe(E=128, H=32, I=32, k=4, seed=7)
    x = torch.randn(40, 32)
    assert rel_err(m(x), moe_float64(m, x)) <= 1e-5


def test_from_float_keeps_the_scale_rule_and_weights():
    g = torch.Generator().manual_seed(8)
    E, H, I = 4, 64, 32
    w1, w2 = torch.randn(E, 2 * I, H, generator=g), torch.randn(E, H, I, generator=g)
    m = MoE.from_float(torch.randn(E, H), torch.zeros(E), w1, torch.zeros(E, 2 * I), w2,
                       torch.zeros(E, H), scale_rule="ceil", experts_per_token=2)
    assert m.w1 == quantize(w1, scale_rule="ceil") and m.w2 == quantize(w2, scale_rule="ceil")
    assert m.scale_rule == "ceil" and "k=2" in repr(m)


def test_empty_input():
    m = random_moe(seed=9)
    out = m(torch.zeros(0, m.hidden_size))
    assert out.shape == (0, m.hidden_size)


def test_module_moves_with_to_and_keeps_the_weights_exactly():
    w1 = torch.randn(8, 64, 64, generator=torch.Generator().manual_seed(10))
    m = random_moe(seed=10).to(torch.device("cpu"))
    assert dict(m.named_buffers()).keys() >= {"w1_codes", "w1_scales", "w2_codes", "router_weight"}
    # the packed expert layout (rows padded to 64, K to 64) gives the MXTensors back bit for bit
    q1 = quantize(w1[:, :40, :48], scale_rule="ceil")  # [E, 2I, H] with 2I = 40, H = 48
    q2 = quantize(w1[:, :48, :20], scale_rule="ceil")  # [E, H, I]
    m2 = MoE(m.router_weight[:, :48], m.router_bias, q1, m.b1[:, :40], q2, m.b2[:, :48],
             experts_per_token=2)
    assert m2.w1_codes.shape == (8, 64, 32) and m2.w1_scales.shape == (8, 2, 64)
    assert m2.w1 == q1 and m2.w2 == q2


# -- bad inputs -----------------------------------------------------------------------------

def test_bad_forward_inputs():
    m = random_moe(seed=11)
    with pytest.raises(TypeError, match="bfloat16, float16 or float32"):
        m(torch.zeros(2, m.hidden_size, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\[T, 64\]"):
        m(torch.zeros(2, 63))
    with pytest.raises(ValueError, match=r"\[T, 64\]"):
        m(torch.zeros(m.hidden_size))
    with pytest.raises(ValueError, match="backend"):
        m(torch.zeros(1, m.hidden_size), backend="cuda")
    with pytest.raises(TypeError, match="torch.Tensor"):
        m([[0.0] * m.hidden_size])


def test_bad_constructor_arguments():
    m = random_moe(E=4, H=64, I=32, seed=12)
    args = dict(router_weight=m.router_weight, router_bias=m.router_bias, w1=m.w1, b1=m.b1,
                w2=m.w2, b2=m.b2)
    with pytest.raises(ValueError, match=r"w2 must be an MXTensor of shape \(4, 64, 32\)"):
        MoE(**{**args, "w2": quantize(torch.randn(4, 64, 64))})
    with pytest.raises(ValueError, match=r"router_weight must have shape \(4, 64\)"):
        MoE(**{**args, "router_weight": torch.zeros(5, 64)})
    with pytest.raises(ValueError, match=r"b1 must have shape \(4, 64\)"):
        MoE(**{**args, "b1": torch.zeros(4, 32)})
    with pytest.raises(TypeError, match="b2 must be float32"):
        MoE(**{**args, "b2": torch.zeros(4, 64, dtype=torch.int64)})
    with pytest.raises(ValueError, match="experts_per_token"):
        MoE(**args, experts_per_token=5)
    with pytest.raises(ValueError, match="blocks of 32 along the last axis"):
        MoE(**{**args, "w1": quantize(torch.randn(4, 64, 64), axis=1)})
    with pytest.raises(ValueError, match="even 2I"):
        MoE(**{**args, "w1": quantize(torch.randn(4, 63, 64))})


def test_from_float_rejects_non_finite_weights():
    w1 = torch.randn(2, 64, 32)
    w1[1, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="w1 contains NaN or Inf"):
        MoE.from_float(torch.zeros(2, 32), torch.zeros(2), w1, torch.zeros(2, 64),
                       torch.randn(2, 32, 32), torch.zeros(2, 32))


def test_reference_functions_agree_with_module():
    m = random_moe(seed=13)
    x = torch.randn(5, m.hidden_size)
    ids, w = route_reference(x, m.router_weight, m.router_bias, m.experts_per_token)
    assert torch.equal(ids, m.route(x)[0])
    out = moe_reference(x, m.router_weight, m.router_bias, m.w1_codes, m.w1_scales, m.b1,
                        m.w2_codes, m.w2_scales, m.b2, m.experts_per_token)
    assert torch.equal(out, m(x, backend="reference"))
