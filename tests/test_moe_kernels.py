"""The Triton MoE path (TRITON_INTERPRET=1 on CPU) against a float64 MoE on dequantized weights."""

import os

import torch

if not torch.cuda.is_available():  # before any kernel module is imported (conftest does the same)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from moe_oracle import moe_float64, random_moe, rel_err  # noqa: E402
from mxfp4.kernels.linear import arrival_counters  # noqa: E402
from mxfp4.kernels.moe import GemmConfig, MoEConfig, default_config, moe_forward  # noqa: E402
from mxfp4.kernels.moe_routing import num_blocks_max  # noqa: E402
from mxfp4.nn import MoE  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-2  # bf16 activations and intermediates


def _x(T, H, seed, dtype=torch.bfloat16):
    return torch.randn(T, H, generator=torch.Generator().manual_seed(seed)).to(dtype).to(DEV)


def _check(m, x, config=None):
    out = m.to(DEV)(x, backend="triton", config=config)
    assert out.dtype == x.dtype and out.shape == x.shape
    err = rel_err(out.cpu(), moe_float64(m.cpu(), x.cpu()))
    m.to(DEV)
    assert err <= TOL, err
    return out


def _batch(bm, bn=64, bk=64):
    g = GemmConfig(bm, bn, bk)
    return MoEConfig(False, g, g)


def _decode(bk=64):
    return MoEConfig(True, GemmConfig(16, 64, bk), GemmConfig(16, 128, bk))


@pytest.mark.parametrize("T", [1, 3])
def test_decode_path(T):
    m = random_moe(E=16, H=64, I=32, seed=T)
    _check(m, _x(T, 64, T), _decode())


@pytest.mark.parametrize("T,bm", [(5, 16), (37, 32)])
def test_batch_path_tiles_not_dividing(T, bm):
    m = random_moe(E=8, H=96, I=64, seed=T)  # H, 2I, I not multiples of the 64 tiles
    _check(m, _x(T, 96, T), _batch(bm, bn=64, bk=64))


def test_k_steps_wider_than_64_end_with_64_wide_ones():
    m = random_moe(E=8, H=320, I=192, k=2, seed=22)  # K = 320 = 256 + 64 and 192 = 128 + 64
    _check(m, _x(2, 320, 6), MoEConfig(True, GemmConfig(16, 64, 256), GemmConfig(16, 64, 128)))
    _check(m, _x(9, 320, 7), _batch(16, bk=256))
    with pytest.raises(ValueError, match="multiple of 64"):
        _check(m, _x(9, 320, 7), _batch(16, bk=96))


def test_float32_and_float16_inputs():
    m = random_moe(E=8, H=64, I=32, seed=21)
    _check(m, _x(3, 64, 4, torch.float32), _decode())
    _check(m, _x(6, 64, 5, torch.float16), _batch(16))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_k_from_one_to_four(k):
    m = random_moe(E=8, H=64, I=32, k=k, seed=30 + k)
    _check(m, _x(2, 64, k), _decode())
    _check(m, _x(11, 64, k), _batch(16))


def test_all_tokens_to_one_expert_and_empty_experts():
    m = random_moe(E=16, H=64, I=32, k=2, seed=40)
    m.router_bias[:] = 0
    m.router_bias[13] = 50  # every token's first choice; most experts get nothing
    x = _x(24, 64, 40)
    assert (m.route(x.cpu())[0][:, 0] == 13).all()
    _check(m, x, _batch(16))
    _check(m, x[:2], _decode())


def test_router_ties_go_to_the_lower_expert():
    m = random_moe(E=8, H=64, I=32, k=2, seed=41)
    m.router_weight[:] = 0
    m.router_bias[:] = torch.tensor([0, 2, 0, 2, 0, 2, 0, 0], dtype=torch.bfloat16)
    x = _x(3, 64, 41)
    ref_ids = m.route(x.cpu())[0]
    assert ref_ids.tolist() == [[1, 3]] * 3
    # experts 1, 3, 5 differ, so picking 5 instead of 1 or 3 would change the output
    _check(m, x, _decode())
    _check(m, x, _batch(16))


def test_many_experts():
    m = random_moe(E=128, H=32, I=32, k=4, seed=42)
    _check(m, _x(2, 32, 42), _decode())
    _check(m, _x(13, 32, 43), _batch(16, bn=64, bk=64))


@pytest.mark.filterwarnings("ignore:overflow")  # sigmoid of the huge gates, in the interpreter
def test_wide_scales_take_the_two_multiply_path():
    m = random_moe(E=8, H=64, I=32, k=2, seed=43)
    m.w1_scales[0, 0] = 242  # |w| around 2^117: those gates clamp, the rest stays finite
    m = MoE(m.router_weight, m.router_bias, m.w1, m.b1, m.w2, m.b2, experts_per_token=2)
    assert not m._fused
    m.router_bias[:] = 0
    m.router_bias[0] = 20  # route everything through the huge expert
    x = _x(4, 64, 44)
    for cfg in (_decode(), _batch(16)):
        _check(m, x, cfg)


def test_default_configs_cover_both_paths():
    assert default_config(1, 4, 128).decode and not default_config(64, 4, 128).decode
    for T in (16, 256, 4096, 16384):
        cfg = default_config(T, 4, 128)
        assert cfg.w1.bm == cfg.w2.bm
    assert num_blocks_max(4, 128, 16) == 5 and num_blocks_max(65536, 128, 128) == 640
    assert default_config(4096, 4, 128).tail.bm == 16 and default_config(16384, 4, 128).tail is None


def test_default_config_end_to_end():
    m = random_moe(E=8, H=64, I=32, seed=50)
    for T in (2, 12):
        _check(m, _x(T, 64, T))


def test_sizes_not_multiples_of_the_block():
    m = random_moe(E=4, H=48, I=40, k=2, seed=51)  # the last blocks of 32 along H and I are padded
    _check(m, _x(2, 48, 0), _decode())
    _check(m, _x(7, 48, 1), _batch(16))


def test_forward_rejects_weights_not_in_the_packed_layout():
    m = random_moe(E=4, H=64, I=32, seed=51)
    w1 = m.w1  # the plain MXTensor layout
    with pytest.raises(ValueError, match="packed expert layout"):
        moe_forward(_x(1, 64, 0), m.router_weight, m.router_bias, w1.codes, w1.scales, m.b1,
                    m.w2_codes, m.w2_scales, m.b2, 4)


def test_batch_path_is_deterministic():
    # ranks inside an expert come from atomics, but every row is computed on its own and written
    # back by pair index, and the k rows of a token are summed in slot order
    m = random_moe(E=8, H=64, I=32, seed=52).to(DEV)
    x = _x(21, 64, 52)
    first = m(x, backend="triton", config=_batch(16))
    assert torch.equal(first, m(x, backend="triton", config=_batch(16)))


@pytest.mark.parametrize("T,k,H,I,warps", [(1, 4, 64, 32, (2, 4)), (2, 2, 192, 64, (1, 2))])
def test_decode_on_the_tensor_core_gemv(T, k, H, I, warps):
    # kernels/moe_gemv.py: 16 weight rows x one pair per program, K split over `warps` warps;
    # K = 192 and 64 end in half 128-wide steps
    m = random_moe(E=8, H=H, I=I, k=k, seed=40 + T)
    g = GemmConfig(16, 64, 64)
    _check(m, _x(T, H, T), MoEConfig(True, g, g, gemv=warps))
    assert default_config(1, 4, 128).gemv == (4, 4) and not default_config(64, 4, 128).gemv


@pytest.mark.parametrize("T,k", [(1, 4), (3, 2)])
def test_decode_w1_and_w2_in_one_launch(T, k):
    # W2's programs wait on per-pair counters in the arrival-counter arena, shared with other
    # kernels (the router's token counters, split-K); the combine kernel zeroes them again
    m = random_moe(E=8, H=64, I=32, k=k, seed=80 + T)
    g = GemmConfig(16, 64, 64)
    cfg = MoEConfig(True, g, g, gemv=(2, 2), one_launch=True, gemv_maxnreg=72)
    counters = arrival_counters(torch.device(DEV))
    for seed in (T, T + 1):
        _check(m, _x(T, 64, seed), cfg)
        assert not counters.any()
    with pytest.raises(ValueError, match="equal warps"):
        MoEConfig(True, g, g, gemv=(2, 4), one_launch=True)
    assert default_config(T, k, 128).one_launch
    assert default_config(1, 4, 128).gemv_maxnreg == 72


@pytest.mark.parametrize("T", [37, 28])
def test_batch_tail_blocks(T):
    # k = E = 2: both experts get T pairs. 37 = 32 + 5: the last 5 rows run in the 16-row
    # tail GEMMs; 28 is more than a tail holds, so it stays one 32-row block
    m = random_moe(E=2, H=64, I=32, k=2, seed=70 + T)
    g = GemmConfig(32, 64, 64)
    _check(m, _x(T, 64, T), MoEConfig(False, g, g, tail=GemmConfig(16, 64, 64)))
    with pytest.raises(ValueError, match="smaller than"):
        _check(m, _x(T, 64, T), MoEConfig(False, g, g, tail=GemmConfig(32, 64, 64)))
