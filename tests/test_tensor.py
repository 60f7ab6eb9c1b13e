"""MXTensor: round trips through files, gpt-oss views, torch fp4 dtypes, padding and axes."""

import os

import pytest
import torch

import mxfp4
from mxfp4 import MXTensor


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_layout_and_nbytes():
    q = mxfp4.quantize(_x(8, 96))
    assert q.codes.shape == (8, 48) and q.scales.shape == (8, 3)
    assert q.nbytes == 8 * 48 + 8 * 3  # 4.25 bits per element
    assert q.nbytes * 8 / q.numel() == 4.25


@pytest.mark.parametrize("k", [1, 5, 31, 33, 100])
def test_padding_returns_the_original_shape(k):
    x = _x(3, k)
    q = mxfp4.quantize(x)
    assert q.codes.shape == (3, -(-k // 32) * 16)
    out = q.dequantize()
    assert out.shape == x.shape
    full = mxfp4.quantize(torch.nn.functional.pad(x, (0, -k % 32))).dequantize()
    assert torch.equal(out, full[:, :k])


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_every_axis_of_a_3d_tensor(axis):
    x = _x(40, 36, 70, seed=axis + 10)
    q = mxfp4.quantize(x, axis=axis, block_size=8)
    ref = mxfp4.quantize(x.movedim(axis, -1).contiguous(), block_size=8)
    assert torch.equal(q.codes, ref.codes.movedim(-1, axis))
    assert torch.equal(q.scales, ref.scales.movedim(-1, axis))
    out = q.dequantize()
    assert out.shape == x.shape
    assert torch.equal(out, ref.dequantize().movedim(-1, axis))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dequantize_dtypes(dtype):
    x = _x(4, 64)
    q = mxfp4.quantize(x.to(dtype))
    out = mxfp4.dequantize(q, dtype)
    assert out.dtype == dtype
    assert torch.equal(out.float(), q.dequantize())  # E2M1 × 2^e is exact in all three


def test_save_load_round_trip(tmp_path):
    q = mxfp4.quantize(_x(5, 7, 45), axis=1, block_size=16, scale_rule="mse")
    path = tmp_path / "t.safetensors"
    q.save(path)
    r = MXTensor.load(path)
    assert r == q and r.scale_rule == "mse" and r.axis == 1 and r.block_size == 16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_corrupt_and_truncated_files(tmp_path):
    q = mxfp4.quantize(_x(4, 64))
    good = tmp_path / "good.safetensors"
    q.save(good)
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) - 10])
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 3)
    (tmp_path / "header.safetensors").write_bytes(data[:8] + b"{not json" + data[17:])
    for name in ("trunc", "junk", "header"):
        with pytest.raises(ValueError, match="cannot read MXTensor"):
            MXTensor.load(tmp_path / f"{name}.safetensors")
    with pytest.raises(FileNotFoundError):
        MXTensor.load(tmp_path / "missing.safetensors")


def test_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"codes": torch.zeros(4, 32, dtype=torch.uint8),
               "scales": torch.zeros(4, 2, dtype=torch.uint8)}, str(tmp_path / "a.safetensors"))
    with pytest.raises(ValueError, match="not a valid MXTensor"):
        MXTensor.load(tmp_path / "a.safetensors")
    q = mxfp4.quantize(_x(4, 64))
    meta = q.metadata() | {"shape": "[4, 96]"}
    save_file({"codes": q.codes, "scales": q.scales}, str(tmp_path / "b.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="needs codes"):
        MXTensor.load(tmp_path / "b.safetensors")


def test_atomic_save_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    q = mxfp4.quantize(_x(4, 64))
    q.save(path)
    before = path.read_bytes()
    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        mxfp4.quantize(_x(4, 64, seed=1)).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_gpt_oss_views_are_zero_copy():
    q = mxfp4.quantize(_x(3, 6, 128))
    blocks, scales = q.to_gpt_oss()
    assert blocks.shape == (3, 6, 4, 16) and scales.shape == (3, 6, 4)
    assert blocks.data_ptr() == q.codes.data_ptr() and scales.data_ptr() == q.scales.data_ptr()
    r = MXTensor.from_gpt_oss(blocks, scales)
    assert r == q and r.codes.data_ptr() == q.codes.data_ptr()
    short = MXTensor.from_gpt_oss(blocks, scales, shape=(3, 6, 100))
    assert short.dequantize().shape == (3, 6, 100)


def test_gpt_oss_views_need_blocks_of_32_along_k():
    with pytest.raises(ValueError, match="blocks of 32"):
        mxfp4.quantize(_x(64, 4), axis=0).to_gpt_oss()
    with pytest.raises(ValueError, match=r"\[..., K/32, 16\]"):
        MXTensor.from_gpt_oss(torch.zeros(4, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="scales must have shape"):
        MXTensor.from_gpt_oss(torch.zeros(4, 2, 16, dtype=torch.uint8),
                              torch.zeros(4, 3, dtype=torch.uint8))


def test_torch_fp4_dtypes_round_trip():
    q = mxfp4.quantize(_x(4, 64))
    codes, scales = q.to_torch_dtypes()
    assert codes.dtype == torch.float4_e2m1fn_x2 and scales.dtype == torch.float8_e8m0fnu
    assert codes.data_ptr() == q.codes.data_ptr()
    r = MXTensor.from_torch_dtypes(codes, scales, shape=(4, 64))
    assert r == q
    # torch decodes the E8M0 scale bytes to the same powers of two
    assert torch.equal(scales.float(), 2.0 ** (q.scales.float() - 127))
    with pytest.raises(TypeError, match="float4_e2m1fn_x2"):
        MXTensor.from_torch_dtypes(q.codes, scales, shape=(4, 64))


def test_to_device_and_equality():
    q = mxfp4.quantize(_x(4, 64))
    assert q.to("cpu") == q and q.cpu() is not q
    other = mxfp4.quantize(_x(4, 64, seed=5))
    assert q != other and q != "not a tensor"
    assert "MXTensor(shape=(4, 64)" in repr(q)


def test_constructor_checks():
    q = mxfp4.quantize(_x(4, 64))
    with pytest.raises(ValueError, match="needs codes"):
        MXTensor(q.codes[:, :10], q.scales, shape=(4, 64), axis=1)
    with pytest.raises(TypeError, match="uint8"):
        MXTensor(q.codes.int(), q.scales, shape=(4, 64), axis=1)
    with pytest.raises(ValueError, match="scale_rule"):
        MXTensor(q.codes, q.scales, shape=(4, 64), axis=1, scale_rule="round")
    with pytest.raises(IndexError):
        MXTensor(q.codes, q.scales, shape=(4, 64), axis=2)
