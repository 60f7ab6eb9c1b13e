"""`mxfp4 bench moe` on CPU: baselines route in fp32, every column is checked before it is timed,
and the triton_kernels column exists only when the package can be imported.

The timer (CUDA graphs) is replaced by a stand-in that records what it was asked to time; the
MXFP4 kernels run in the Triton interpreter (conftest sets TRITON_INTERPRET=1 without a GPU).
"""

import json
import sys
from types import SimpleNamespace

import pytest
import torch

from mxfp4.bench import moe as bench
from mxfp4.bench import moe_baselines as baseline
from mxfp4.format import e2m1_table, e8m0_to_float32
from mxfp4.nn.moe import MoE


@pytest.fixture
def timer(monkeypatch):
    """Stands in for graph_time_us: 10 µs per call, the timed functions kept in order."""
    timed = []

    def fake(fn, inputs, replays=20):
        timed.append(fn)
        return 10.0

    monkeypatch.setattr(baseline, "graph_time_us", fake)
    return timed


@pytest.fixture(scope="module")
def layer():
    """A small layer; T = 9 with k = 2 takes the batch kernels (the decode ones crawl in the
    interpreter: their W2 programs wait on counters)."""
    return bench.make_layer(E=4, H=64, I=64, k=2, device="cpu")


@pytest.fixture
def no_triton_kernels(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_kernels", None)  # `import triton_kernels` raises


def _near_tie_layer() -> tuple[MoE, torch.Tensor]:
    """E = 4, k = 2; token j's logits for experts 0-2 are 1 + r * 2^-9 with r a permutation of
    0, 1, 2 that makes expert j the lowest. bf16 rounds all three to 1.0, so a bf16 router keeps
    the same two experts for every token, whatever its tie rule, and is wrong for two of three."""
    E, H, I, k = 4, 64, 32, 2
    g = torch.Generator().manual_seed(3)
    rw = torch.zeros(E, H)
    rw[:3, :3], rw[3, :3] = 1.0, -4.0
    for j in range(3):
        for rank, e in enumerate([j, (j + 1) % 3, (j + 2) % 3]):
            rw[e, 32 + j] = float(rank)
    x = torch.zeros(3, H)
    for j in range(3):
        x[j, j], x[j, 32 + j] = 1.0, 2.0 ** -9
    zeros = torch.zeros
    m = MoE.from_float(rw.bfloat16(), zeros(E).bfloat16(), torch.randn(E, 2 * I, H, generator=g) * 0.2,
                       zeros(E, 2 * I).bfloat16(), torch.randn(E, H, I, generator=g) * 0.2,
                       zeros(E, H).bfloat16(), scale_rule="ceil", experts_per_token=k)
    return m, x.bfloat16()


def test_bf16_baseline_routes_in_fp32_where_bf16_logits_tie():
    m, x = _near_tie_layer()
    bf16_logits = torch.nn.functional.linear(x, m.router_weight, m.router_bias)
    assert (bf16_logits[:, :3] == 1.0).all()  # the near ties that bf16 routing cannot see
    ref = m(x, backend="reference").float()
    assert m.route(x)[0].sort(dim=1).values.tolist() == [[1, 2], [0, 2], [0, 1]]
    fn = baseline.bf16_torch_moe(m, baseline._bf16_weights(m.w1), baseline._bf16_weights(m.w2))
    assert baseline.rel_err(fn(x), ref) <= baseline.REL_TOL


def test_a_wrong_or_failing_baseline_is_reported_and_not_timed(timer):
    x = [torch.randn(2, 8).bfloat16()]
    ref = x[0].float() * 2

    wrong = baseline.checked_time(lambda t: t * 2.1, x, ref)
    assert "us" not in wrong and wrong["rel_err"] > baseline.REL_TOL
    assert "differs from the reference" in wrong["error"]

    def broken(t):
        raise RuntimeError("no kernel for this shape")

    failed = baseline.checked_time(broken, x, ref)
    assert failed == {"error": "RuntimeError: no kernel for this shape"}

    nan = baseline.checked_time(lambda t: t * float("nan"), x, ref)
    assert "us" not in nan and "error" in nan
    assert timer == []

    def right(t):
        return t * 2

    assert baseline.checked_time(right, x, ref) == {"rel_err": 0.0, "us": 10.0}
    assert timer == [right]


def _args(tokens):
    return SimpleNamespace(device="cpu", tokens=tokens, sweep=False, bf16=True)


def test_the_layer_table_without_triton_kernels_has_no_such_column(layer, timer, no_triton_kernels,
                                                                   tmp_path):
    lines, versions = baseline.baselines(layer, bf16=True)
    assert list(lines) == ["bf16_torch"] and versions == {}
    seen = []
    rows, sweep = bench.bench_layer(_args([9]), layer, lines, on_row=lambda r: seen.append(len(r)))
    assert seen == [1] and [r["T"] for r in rows] == [9] and sweep[0]["us"] == 10.0
    for row in rows:
        assert row["us"] == 10.0 and row["bf16_torch_us"] == 10.0
        assert row["rel_err"] <= baseline.REL_TOL and row["bf16_torch_rel_err"] <= baseline.REL_TOL
    assert len(timer) == 2  # ours, then bf16 torch
    cols = bench.columns(lines, rows)
    assert "bf16_torch_us" in cols and "bf16_torch_error" not in cols
    note = baseline.baseline_note(list(lines), versions)
    json_path, md_path = bench.write_results(str(tmp_path), "moe", "t", {}, cols, rows, note)
    data = json.loads(open(json_path).read())
    assert not any("triton_kernels" in c for c in data["columns"])
    assert not any("triton_kernels" in k for r in data["rows"] for k in r)
    assert "triton_kernels could not be imported: no column" in data["notes"]


def test_a_baseline_that_fails_its_check_or_its_setup_gets_an_error_and_no_time(layer, timer):
    wrong = lambda x: torch.zeros_like(x)  # noqa: E731

    def no_setup(T):
        raise RuntimeError("needs a GPU")

    rows, _ = bench.bench_layer(_args([9]), layer, {"bf16_torch": lambda T: wrong, "triton_kernels": no_setup})
    (row,) = rows
    assert row["bf16_torch_us"] == "" and row["bf16_torch_rel_err"] == 1.0
    assert "differs from the reference" in row["bf16_torch_error"]
    assert row["triton_kernels_us"] == "" and row["triton_kernels_error"] == "RuntimeError: needs a GPU"
    assert wrong not in timer and len(timer) == 1  # only our kernel was timed
    cols = bench.columns(["bf16_torch", "triton_kernels"], rows)
    assert cols[-2:] == ["bf16_torch_error", "triton_kernels_error"]


def test_triton_kernels_operands_are_the_same_bytes_with_k_along_axis_1():
    m = bench.make_layer(E=3, H=96, I=64, k=2, device="cpu")
    for w in (m.w1, m.w2):
        E, N, K = w.shape
        codes, scales = baseline.tk_operands(w)
        assert codes.shape == (E, K // 2, N) and scales.shape == (E, K // 32, N)
        assert codes.stride(-2) == 1 and scales.stride(-2) == 1  # column-major: K contiguous
        assert codes.data_ptr() == w.codes.data_ptr()  # views: nothing requantized or copied
        # decode in triton_kernels' convention: element 2i of K in the low nibble of byte i
        lo, hi = e2m1_table()[(codes & 15).long()], e2m1_table()[(codes >> 4).long()]
        values = torch.stack([lo, hi], dim=2).reshape(E, K, N)
        values = values * e8m0_to_float32(scales).repeat_interleave(32, dim=1)
        assert torch.equal(values, w.dequantize().float().transpose(1, 2))


def test_triton_kernels_operands_reject_other_blockings():
    w = bench.make_layer(E=2, H=64, I=32, k=1, device="cpu").w1
    flat = type(w)(w.codes[0], w.scales[0], tuple(w.shape[1:]), 1, 32, w.scale_rule)
    with pytest.raises(ValueError, match=r"MXTensor \[E, N, K\]"):
        baseline.tk_operands(flat)
