"""The MoE's W1 and W2 on the Gluon tiles (MoEConfig(ws=True): the warp-specialized one,
ws="rs": the register-operand one; kernels/ws_moe.py):
their configs, and on an sm_90 GPU with triton 3.6 the whole MoE against float64; anywhere
else the explicit choice raises with the reason (it never falls back)."""

from dataclasses import replace
import os
import re

import torch

if not torch.cuda.is_available():  # before any kernel module is imported (conftest does the same)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from moe_oracle import moe_float64, random_moe, rel_err  # noqa: E402
from mxfp4.kernels import ws_gemm, ws_moe  # noqa: E402
from mxfp4.kernels.moe import GemmConfig, MoEConfig  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("bm", [16, 32, 64, 128])
def test_tile_configs_fit_an_h100(bm):
    cfg = ws_moe.tile_config(bm)
    assert ws_gemm.config_problem(cfg) is None
    assert cfg["BN"] == 64 and cfg["LOADER"]  # 64 divides the experts' padded rows


@pytest.mark.parametrize("bm", [16, 32, 64, 128])
def test_rs_tile_configs_fit_an_h100(bm):
    from mxfp4.kernels import rs_gemm
    cfg = ws_moe.rs_tile_config(bm)
    assert rs_gemm.config_problem(cfg) is None
    assert cfg["BN"] == 64 and cfg["BM"] == bm and cfg["num_warps"] == 4
    wide = ws_moe.rs_tile_config(bm, 128)  # two warpgroups, no loader warp: two CTAs an SM
    assert rs_gemm.config_problem(wide) is None
    assert (wide["BN"], wide["num_warps"], wide["maxnreg"], wide["LOADER"]) == (128, 8, 128, False)


def test_tile_rows_must_divide_the_experts_rows(monkeypatch):
    monkeypatch.setattr(ws_moe, "unsupported_reason", lambda a, fused: None)
    rows = torch.zeros(64, 128, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="divide the experts' 2880 padded rows"):
        ws_moe._launch_config(rows, True, 64, None, "rs", 2880, 128)
    assert ws_moe._launch_config(rows, True, 64, None, "rs", 5760, 128)["num_warps"] == 8
    # the ws tile keeps 64 rows whatever the GemmConfig says
    assert ws_moe._launch_config(rows, True, 64, None, "ws", 2880, 128)["num_warps"] == 4


def test_the_tile_choice_is_checked():
    g = GemmConfig(16, 64, 64)
    with pytest.raises(ValueError, match="'ws' or 'rs'"):
        MoEConfig(False, g, g, ws="fast")
    assert MoEConfig(False, g, g, ws="rs").ws == "rs"


@pytest.mark.parametrize("tile", [True, "rs"])
@pytest.mark.parametrize("T, bm", [(1, 16), (40, 16), (64, 64), (300, 32)])
def test_ws_gemms_match_float64_or_say_why_not(T, bm, tile):
    m = random_moe(E=8, H=128, I=96, k=4, seed=T)  # I = 96: a ragged second K step
    x = torch.randn(T, 128, generator=torch.Generator().manual_seed(T)).bfloat16().to(DEV)
    g = GemmConfig(bm, 64, 64)
    cfg = MoEConfig(False, g, g, ws=tile)
    why = ws_moe.unsupported_reason(x, fused=True)
    if why:  # the CPU, another GPU or another triton: the reason, no fallback
        with pytest.raises(ValueError, match="warp-specialized grouped GEMMs cannot run here: " + re.escape(why)):
            m.to(DEV)(x, backend="triton", config=cfg)
        return
    out = m.to(DEV)(x, backend="triton", config=cfg)
    assert rel_err(out.cpu(), moe_float64(m.cpu(), x.cpu())) <= 1e-2


@pytest.mark.parametrize("T", [1, 64, 300])
def test_rs_tiles_of_128_rows_match_float64_or_say_why_not(T):
    m = random_moe(E=8, H=192, I=128, k=4, seed=T)  # W1 takes 128-row tiles, W2 64
    x = torch.randn(T, 192, generator=torch.Generator().manual_seed(T)).bfloat16().to(DEV)
    g = GemmConfig(64, 128, 64)
    cfg = MoEConfig(False, g, g, ws="rs")
    why = ws_moe.unsupported_reason(x, fused=True)
    if why:
        with pytest.raises(ValueError, match=re.escape(why)):
            m.to(DEV)(x, backend="triton", config=cfg)
        return
    out = m.to(DEV)(x, backend="triton", config=cfg)
    assert rel_err(out.cpu(), moe_float64(m.cpu(), x.cpu())) <= 1e-2


@pytest.mark.parametrize("tile, name", [(True, "ws"), ("ws", "ws"), ("rs", "rs")])
def test_the_configured_tile_is_the_one_launched(monkeypatch, tile, name):
    """MoEConfig.ws reaches both grouped GEMMs as the tile's name (a first device run timed the
    "ws" tile under ws="rs": the flag went through `cfg.ws and not cfg.decode`, i.e. True),
    with GemmConfig.bn shrunk until it divides each GEMM's rows."""
    launched = []

    class Stop(Exception):  # after W2: y was never written, nothing to combine
        pass

    def record(*args, tile="ws", bn=64, **kwargs):
        launched.append((tile, bn))
        if len(launched) == 2:
            raise Stop

    monkeypatch.setattr(ws_moe, "ws_w1", record)
    monkeypatch.setattr(ws_moe, "ws_w2", record)
    m = random_moe(E=8, H=192, I=128, k=4, seed=0)  # W1: 256 rows, W2: 192
    x = torch.randn(40, 192, generator=torch.Generator().manual_seed(0)).bfloat16().to(DEV)
    g = GemmConfig(16, 128, 64)  # 128 weight rows a tile where they divide the rows
    with pytest.raises(Stop):
        m.to(DEV)(x, backend="triton", config=MoEConfig(False, g, g, ws=tile))
    assert launched == [(name, 128), (name, 64)]


def test_the_default_config_takes_a_gluon_tile_only_where_the_table_says(monkeypatch):
    """moe.GLUON_MOE rows (fewest tokens, most tokens, tile) apply to the default config on an
    sm_90 GPU with triton 3.6; elsewhere the Triton kernels stay (a CUDA device warns once)."""
    from mxfp4.kernels import moe
    g = GemmConfig(16, 64, 64)
    base = MoEConfig(False, g, g)
    x = torch.zeros(40, 128, dtype=torch.bfloat16)
    monkeypatch.setattr(moe, "GLUON_MOE", ((16, 64, "rs", 128), (65, 1 << 20, "ws", 64)))
    monkeypatch.setattr(ws_gemm, "platform_reason", lambda device: None)
    monkeypatch.setattr(ws_moe, "unsupported_reason", lambda a, fused: None)
    assert moe._with_gluon_tile(base, x, 40, True) == replace(base, ws="rs", w1=replace(g, bn=128))
    assert moe._with_gluon_tile(base, x, 300, True) == replace(base, ws="ws")
    assert moe._with_gluon_tile(base, x, 8, True).ws is False
    assert moe._with_gluon_tile(MoEConfig(True, g, g), x, 40, True).ws is False  # decode path
    monkeypatch.setattr(ws_moe, "unsupported_reason", lambda a, fused: "not here")
    assert moe._with_gluon_tile(base, x, 40, True).ws is False


def test_the_shipped_moe_table_takes_rs_with_128_row_w1_tiles_from_4096_tokens(monkeypatch):
    """As measured on an H100 (docs/kernels.md, fifth session): the register-operand tile with
    128-row W1 tiles beats the Triton kernels at T = 4096 and 16384; below, where its launches'
    host time loses eager calls, the Triton kernels stay. auto_config is what moe_forward runs
    and `mxfp4 bench moe` times."""
    from mxfp4.kernels import moe
    monkeypatch.setattr(ws_gemm, "platform_reason", lambda device: None)
    monkeypatch.setattr(ws_moe, "unsupported_reason", lambda a, fused: None)
    for t in (1, 16, 256, 1024, 4095):
        x = torch.zeros(t, 128, dtype=torch.bfloat16)
        assert moe.auto_config(x, 4, 128, True) == moe.default_config(t, 4, 128)
    for t in (4096, 16384):
        x = torch.zeros(t, 128, dtype=torch.bfloat16)
        base = moe.default_config(t, 4, 128)
        assert moe.auto_config(x, 4, 128, True) == replace(base, ws="rs",
                                                           w1=replace(base.w1, bn=128))


def test_only_another_gpu_or_triton_warns(monkeypatch):
    """The table's tile on a GPU or triton it was not written for: one warning, the Triton
    kernels; on the right one, inputs the tile does not take (float32 x, scale bytes past 128)
    keep the Triton kernels silently."""
    import types
    import warnings
    from mxfp4.kernels import moe
    g = GemmConfig(16, 64, 64)
    base = MoEConfig(False, g, g)
    x = types.SimpleNamespace(device=torch.device("cuda"))  # only its device is read first
    monkeypatch.setattr(moe, "_GLUON_WARNED", [])
    monkeypatch.setattr(moe, "GLUON_MOE", ((16, 1024, "rs", 64),))
    monkeypatch.setattr(ws_gemm, "platform_reason", lambda device: None)
    monkeypatch.setattr(ws_moe, "unsupported_reason", lambda a, fused: "it takes bfloat16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert moe._with_gluon_tile(base, x, 64, True).ws is False
    monkeypatch.setattr(ws_gemm, "platform_reason", lambda device: "it needs an sm_90 GPU")
    with pytest.warns(UserWarning, match="sm_90"):
        assert moe._with_gluon_tile(base, x, 64, True).ws is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        assert moe._with_gluon_tile(base, x, 64, True).ws is False
