"""The fused decode kernels (kernels/decode_ops.py) against their torch twins, and the twins
against the model's own RMSNorm and RoPE.

Without a GPU these run in the Triton interpreter (tests/conftest.py); with one, on CUDA.
"""

import pytest
import torch

from mxfp4.kernels import decode_ops as ops
from mxfp4.models.gpt_oss import RMSNorm
from mxfp4.models.rope import Rope, apply_rope, yarn_inv_freq

DEV = "cuda" if torch.cuda.is_available() else "cpu"
ROPE_ARGS = (150000.0, 32.0, 1.0, 32.0, 4096)  # gpt-oss: theta, factor, ntk alpha / beta, context


def ulps(a: torch.Tensor, b: torch.Tensor) -> int:
    """Largest distance between a and b in units in the last place of their dtype."""
    assert a.dtype == b.dtype and a.shape == b.shape
    bits = {2: torch.int16, 4: torch.int32}[a.element_size()]

    def ordered(t):  # sign-magnitude bits -> integers in the order of the values
        i = t.contiguous().view(bits).long()
        mag = i & ((1 << (8 * t.element_size() - 1)) - 1)
        return torch.where(i < 0, -mag, mag)

    return int((ordered(a) - ordered(b)).abs().max()) if a.numel() else 0


def _randn(*shape, dtype, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype).to(DEV)


# -- add_rmsnorm -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("m,h", [(1, 2880), (5, 64), (3, 8192), (2, 1), (4, 100)])
@pytest.mark.parametrize("with_delta", [True, False], ids=["delta", "no-delta"])
def test_add_rmsnorm_matches_twin(dtype, m, h, with_delta):
    x = _randn(m, h, dtype=dtype, seed=h, scale=3.0)
    delta = _randn(m, h, dtype=dtype, seed=h + 1) if with_delta else None
    w = _randn(h, dtype=dtype, seed=h + 2)
    out_h, y = ops.add_rmsnorm(x, delta, w, 1e-5)
    ref_h, ref_y = ops.add_rmsnorm_reference(x, delta, w, 1e-5)
    assert out_h.dtype == y.dtype == dtype and y.shape == (m, h)
    if with_delta:
        assert out_h.shape == (m, h) and torch.equal(out_h, ref_h)
        assert not torch.equal(out_h, x)  # the add happened
    else:
        assert out_h is x
    _check_norm(y, ref_y)


def _check_norm(y, ref_y):
    # only the sum of squares is added in another order than torch's: in fp32 the inverse
    # norm may differ in its last bits (measured: y within 3 ulps); rounded to 16 bits, that
    # is at most one ulp, and rarely
    if y.dtype == torch.float32:
        assert ulps(y, ref_y) <= 4
    else:
        assert ulps(y, ref_y) <= 1
        assert (y != ref_y).float().mean() <= 0.01


def test_add_rmsnorm_twin_is_the_model_norm():
    x = _randn(3, 2880, dtype=torch.bfloat16, seed=0)
    delta = _randn(3, 2880, dtype=torch.bfloat16, seed=1)
    norm = RMSNorm(2880, 1e-5, torch.bfloat16).to(DEV)
    norm.weight.data = _randn(2880, dtype=torch.bfloat16, seed=2)
    h, y = ops.add_rmsnorm_reference(x, delta, norm.weight, 1e-5)
    assert torch.equal(h, x + delta)
    assert torch.equal(y, norm(x + delta))


def test_add_rmsnorm_strided_rows_and_rounding():
    # rows of a [M, 3, H] tensor (row stride 3H); sums that need round-to-nearest-even in bf16
    base = _randn(4, 3, 96, dtype=torch.bfloat16, seed=5, scale=100.0)
    x, delta = base[:, 1], _randn(4, 96, dtype=torch.bfloat16, seed=6, scale=0.3)
    w = torch.ones(96, dtype=torch.bfloat16, device=DEV)
    h, y = ops.add_rmsnorm(x, delta, w, 1e-6)
    ref_h, ref_y = ops.add_rmsnorm_reference(x, delta, w, 1e-6)
    assert torch.equal(h, ref_h) and h.is_contiguous()
    _check_norm(y, ref_y)
    h, y = ops.add_rmsnorm(x, None, w, 1e-6)
    assert h is x and ulps(y, ops.add_rmsnorm_reference(x, None, w, 1e-6)[1]) <= 1


def test_add_rmsnorm_no_rows():
    x = torch.empty(0, 64, dtype=torch.bfloat16, device=DEV)
    h, y = ops.add_rmsnorm(x, x, torch.ones(64, dtype=torch.bfloat16, device=DEV), 1e-5)
    assert h.shape == y.shape == (0, 64)


def test_add_rmsnorm_bad_inputs():
    x = torch.zeros(2, 64, dtype=torch.bfloat16, device=DEV)
    w = torch.ones(64, dtype=torch.bfloat16, device=DEV)
    cases = [
        ((x.long(), None, w, 1e-5), TypeError, "x must have dtype"),
        ((x[0], None, w, 1e-5), ValueError, "x must have 2 dimensions"),
        ((x, None, w[:32], 1e-5), ValueError, r"weight must be \[64\]"),
        ((x, None, w.to("meta"), 1e-5), ValueError, "weight is on meta"),
        ((x, x.half(), w, 1e-5), TypeError, "delta must have dtype"),
        ((x, x[:1], w, 1e-5), ValueError, "delta must have x's shape"),
        ((x, None, w, "1e-5"), TypeError, "eps must be a float"),
        ((x.t(), None, torch.ones(2, dtype=torch.bfloat16, device=DEV), 1e-5), ValueError,
         "contiguous"),
        ((torch.zeros(1, 8193, device=DEV), None, torch.ones(8193, device=DEV), 1e-5),
         ValueError, "1 to 8192"),
        ((x, [1.0], w, 1e-5), TypeError, "delta must be a torch.Tensor"),
    ]
    for args, error, match in cases:
        with pytest.raises(error, match=match):
            ops.add_rmsnorm(*args)


# -- rope_kv_write -----------------------------------------------------------------------------
def _rope_case(b, heads, kv_heads, d, size, dtype, seed=0):
    """Inputs of rope_kv_write: caches hold random old values, so that stray writes show."""
    inv_freq, concentration = yarn_inv_freq(d, *ROPE_ARGS, device=DEV)
    qkv = _randn(b, (heads + 2 * kv_heads) * d, dtype=dtype, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = torch.randint(0, 200000, (b,), generator=g)
    pos[0] = 0
    k = _randn(b, kv_heads, size, d, dtype=dtype, seed=seed + 2)
    v = _randn(b, kv_heads, size, d, dtype=dtype, seed=seed + 3)
    pc = torch.randint(-1, 1000, (b, size), generator=g)
    return qkv, pos.to(DEV), inv_freq, concentration, (k, v, pc.to(DEV))


def _check_rope(q, ref_q, qkv, concentration, half):
    if q.dtype == torch.float32:  # torch's and the kernel's cos / sin may differ in the last bit
        x = qkv.float().view(q.shape[0], -1, 2, half)[:, :q.shape[1]]
        size = ((x[:, :, 0].abs() + x[:, :, 1].abs()) * concentration).repeat(1, 1, 2)
        assert ((q - ref_q).abs() <= 3 * 2.0**-23 * size).all()  # measured: <= 1.8
    else:
        assert ulps(q, ref_q) <= 1
        assert (q != ref_q).float().mean() <= 1e-3


@pytest.mark.parametrize("b,heads,kv_heads,d,size,slot", [
    (1, 64, 8, 64, 128, 5),      # gpt-oss, batch 1
    (3, 64, 8, 64, 128, 300),    # gpt-oss, batch 3, a sliding-window ring past its end
    (3, 4, 2, 8, 5, 12),         # tiny, ring wrap
    (2, 6, 3, 6, 4, 0),          # head_dim / 2 = 3: padded lanes; heads not a tile multiple
    (2, 2, 1, 4, 3, 2),          # one kv head, the last slot
])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_rope_kv_write_matches_twin(b, heads, kv_heads, d, size, slot, dtype):
    qkv, pos, inv_freq, conc, caches = _rope_case(b, heads, kv_heads, d, size, dtype)
    ours = [c.clone() for c in caches]
    slot_t = torch.tensor([slot], device=DEV)
    q = ops.rope_kv_write(qkv, pos, slot_t, inv_freq, conc, *ours, heads, kv_heads, d)
    ref_q = ops.rope_kv_write_reference(qkv, pos, slot_t, inv_freq, conc, *caches, heads,
                                        kv_heads, d)
    assert q.shape == (b, heads, d) and q.dtype == dtype
    _check_rope(q, ref_q, qkv, conc, d // 2)
    col = slot % size
    others = [i for i in range(size) if i != col]
    for mine, ref in zip(ours, caches):  # the other columns untouched, the new one as the twin
        assert torch.equal(mine[..., others, :] if mine.dim() == 4 else mine[:, others],
                           ref[..., others, :] if ref.dim() == 4 else ref[:, others])
    assert torch.equal(ours[1], caches[1]) and torch.equal(ours[2], caches[2])  # v, pos exact
    _check_rope(ours[0][:, :, col], caches[0][:, :, col], qkv[:, heads * d:], conc, d // 2)
    assert torch.equal(ours[2][:, col], pos)


def test_rope_twin_is_the_model_rope():
    # grouped heads as AttentionBlock.forward views them, angles from Rope.cos_sin
    b, heads, kv_heads, d = 2, 8, 2, 16
    qkv, pos, inv_freq, conc, caches = _rope_case(b, heads, kv_heads, d, 4, torch.bfloat16)
    q = ops.rope_kv_write_reference(qkv, pos, torch.tensor([1], device=DEV), inv_freq, conc,
                                    *caches, heads, kv_heads, d)
    cos, sin = Rope(d, *ROPE_ARGS).cos_sin(pos[:, None])
    qm, km, vm = qkv[:, None].split([heads * d, kv_heads * d, kv_heads * d], dim=-1)
    qm = apply_rope(qm.view(b, 1, kv_heads, heads // kv_heads, d), cos, sin)
    km = apply_rope(km.view(b, 1, kv_heads, d), cos, sin).transpose(1, 2)
    assert torch.equal(q, qm.reshape(b, heads, d))
    assert torch.equal(caches[0][:, :, 1:2], km)
    assert torch.equal(caches[1][:, :, 1:2], vm.view(b, 1, kv_heads, d).transpose(1, 2))


def test_rope_kv_write_reads_slot_on_the_device():
    # the same slot tensor, advanced in place between calls (as a CUDA graph replay sees it)
    qkv, pos, inv_freq, conc, caches = _rope_case(2, 4, 2, 8, 3, torch.bfloat16)
    ours, ref = [c.clone() for c in caches], [c.clone() for c in caches]
    slot = torch.tensor([1], device=DEV)
    for step in range(4):  # columns 1, 2, 0, 1
        ops.rope_kv_write(qkv, pos + step, slot, inv_freq, conc, *ours, 4, 2, 8)
        ops.rope_kv_write_reference(qkv, pos + step, slot, inv_freq, conc, *ref, 4, 2, 8)
        slot += 1
    assert torch.equal(ours[2], ref[2]) and torch.equal(ours[1], ref[1])
    assert ulps(ours[0], ref[0]) <= 1
    assert torch.equal(ours[2][:, 1], pos + 3)


def test_rope_kv_write_no_rows():
    qkv, pos, inv_freq, conc, caches = _rope_case(1, 4, 2, 8, 3, torch.bfloat16)
    empty = [c[:0] for c in caches]
    q = ops.rope_kv_write(qkv[:0], pos[:0], torch.tensor([0], device=DEV), inv_freq, conc,
                          *empty, 4, 2, 8)
    assert q.shape == (0, 4, 8)


def test_rope_kv_write_bad_inputs():
    qkv, pos, inv, conc, (k, v, pc) = _rope_case(2, 4, 2, 8, 3, torch.bfloat16)
    slot = torch.tensor([0], device=DEV)
    good = dict(qkv=qkv, pos=pos, slot=slot, inv_freq=inv, concentration=conc, k_cache=k,
                v_cache=v, pos_cache=pc, heads=4, kv_heads=2, head_dim=8)
    cases = [
        (dict(qkv=qkv[:, :-8]), ValueError, r"qkv must be \[B, \(heads"),
        (dict(qkv=qkv.long()), TypeError, "qkv must have dtype"),
        (dict(qkv=qkv[0]), ValueError, "qkv must have 2 dimensions"),
        (dict(pos=pos.int()), TypeError, "pos must have dtype"),
        (dict(pos=pos[:1]), ValueError, r"pos must be \[2\]"),
        (dict(slot=slot.int()), TypeError, "slot must be a 1-element torch.long"),
        (dict(slot=torch.tensor([0, 1], device=DEV)), TypeError, "slot must be a 1-element"),
        (dict(slot=0), TypeError, "slot must be a 1-element"),
        (dict(slot=slot.to("meta")), ValueError, "slot is on meta"),
        (dict(inv_freq=inv[:2]), ValueError, r"inv_freq must be \[4\]"),
        (dict(inv_freq=inv.double()), TypeError, "inv_freq must have dtype"),
        (dict(concentration=None), TypeError, "concentration must be a float"),
        (dict(head_dim=7, qkv=qkv[:, :56]), ValueError, "head_dim must be even"),
        (dict(heads=3), ValueError, "multiple of kv_heads"),
        (dict(kv_heads=0), ValueError, "kv_heads must be a positive int"),
        (dict(k_cache=k.float()), TypeError, "k_cache must have dtype"),
        (dict(v_cache=v[:, :1]), ValueError, r"v_cache must be \[2, 2, S, 8\]"),
        (dict(v_cache=v[:, :, :2]), ValueError, "v_cache must have k_cache's shape"),
        (dict(k_cache=k.to("meta")), ValueError, "k_cache is on meta"),
        (dict(pos_cache=pc[:, :2]), ValueError, r"pos_cache must be \[2, 3\]"),
        (dict(pos_cache=pc.int()), TypeError, "pos_cache must have dtype"),
    ]
    for change, error, match in cases:
        with pytest.raises(error, match=match):
            ops.rope_kv_write(**{**good, **change})
    assert torch.equal(k, _rope_case(2, 4, 2, 8, 3, torch.bfloat16)[4][0])  # nothing written
