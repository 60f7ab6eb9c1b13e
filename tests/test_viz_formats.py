"""The "Your model" view decodes every format mxfp4 writes: mxfp4 checkpoints (save_quantized),
compressed-tensors exports, MXTensor.save files and gpt-oss files.

Each file is written by the library's own writer; what the API decodes is checked against the
library's own MXTensor of the same weight (dequantize, codes, scales).
"""

import json

import pytest
import torch
from mx_tiny_models import tiny_gemma3
from safetensors.torch import save_file
from starlette.testclient import TestClient

import mxfp4
from mxfp4.io.compressed_tensors import save_compressed_tensors
from mxfp4.nn import quantize_model
from mxfp4.viz.app import create_app

STORED = "mxfp4 (stored)"
CODES = {}  # path -> {name of the codes tensor: the library's MXTensor of it}
FORMATS = {"ckpt": "mxfp4 checkpoint", "ct": "compressed-tensors", "col.safetensors": "MXTensor file",
           "pair": "MXTensor file", "gpt.safetensors": "gpt-oss"}


def _linears(model):
    """name -> MXTensor of each quantized module; a tied one (its codes saved once) left out."""
    out, seen = {}, set()
    for n, m in model.named_modules():
        if hasattr(m, "weight_mx") and m.weight_codes.data_ptr() not in seen:
            seen.add(m.weight_codes.data_ptr())
            out[n] = m.weight_mx
    return out


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    ckpt = tiny_gemma3(layers=1)
    quantize_model(ckpt, method="mse", embeddings=True, block_size=64)
    mxfp4.save_quantized(ckpt, root / "ckpt", max_shard_bytes=20000)  # two shards
    hf = json.loads((root / "ckpt" / "config.json").read_text())
    hf["quantization_config"] = {"format": "mxfp4"}  # no quant_method: read mxfp4_config.json only
    (root / "ckpt" / "config.json").write_text(json.dumps(hf))
    CODES["ckpt"] = {f"{n}.weight_codes": mx for n, mx in _linears(ckpt).items()}
    ct = tiny_gemma3(layers=1, seed=1)
    quantize_model(ct)
    save_compressed_tensors(ct, root / "ct")
    CODES["ct"] = {f"{n}.weight_packed": mx for n, mx in _linears(ct).items()}
    g = torch.Generator().manual_seed(3)
    files = {"col.safetensors": mxfp4.quantize(torch.randn(50, 24, generator=g), axis=0, block_size=16,
                                               scale_rule="ceil"),  # 50 rows: a padded last block
             "cube.safetensors": mxfp4.quantize(torch.randn(3, 96, 5, generator=g), axis=1),
             "vec.safetensors": mxfp4.quantize(torch.randn(100, generator=g), block_size=32)}
    for name, q in files.items():
        q.save(root / name)
        CODES[name] = {"codes": q}
    (root / "pair").mkdir()  # two MXTensor files in one folder: both named "codes" inside
    CODES["pair"] = {}
    for name in ("a", "b"):
        q = mxfp4.quantize(torch.randn(8, 64, generator=g), scale_rule="even")
        q.save(root / "pair" / f"{name}.safetensors")
        CODES["pair"][f"{name}.safetensors:codes"] = q
    gpt = mxfp4.quantize(torch.randn(4, 6, 64, generator=g))
    blocks, scales = gpt.to_gpt_oss()
    save_file({"mlp.experts.gate_up_proj_blocks": blocks.contiguous(),
               "mlp.experts.gate_up_proj_scales": scales.contiguous()}, str(root / "gpt.safetensors"))
    CODES["gpt.safetensors"] = {"mlp.experts.gate_up_proj_blocks": gpt}
    return TestClient(create_app(models_dir=str(root)))


def ok(resp):
    assert resp.status_code == 200, resp.text
    return resp.json()


def _as_rows(mx):
    """The library's decoded tensor as the view's [rows, blocks * block_size] grid."""
    x = mx.dequantize().movedim(mx.axis, -1)
    return x.reshape(-1, x.shape[-1])


def _codes(mx):
    """How often each code is used, padding left out, from the library's own tensors."""
    packed = mx.codes.movedim(mx.axis, -1)
    codes = torch.stack((packed & 15, packed >> 4), -1).flatten(-2)[..., :mx.shape[mx.axis]]
    return torch.bincount(codes.flatten().long(), minlength=16).tolist()


@pytest.mark.parametrize("path", ["ckpt", "ct", "col.safetensors", "pair", "gpt.safetensors",
                                  "ckpt/model-00001-of-00002.safetensors"])
def test_stored_tensors_are_found_in_every_format(client, path):
    t = ok(client.get("/api/model", params={"path": path}))
    stored = {x["name"]: x for x in t["tensors"] if x["kind"] == STORED}
    scales = [x for x in t["tensors"] if x["kind"] == "mxfp4 scales"]
    assert stored and len(stored) == len(scales)
    want = CODES[path.split("/")[0]]
    if "/" not in path:  # a whole folder or file: every stored tensor, nothing left over
        assert set(stored) == set(want) and t["warnings"] == []
    for name, x in stored.items():
        assert x["format"] == FORMATS[path.split("/")[0]]
        assert x["logical_shape"] == list(want[name].shape)


def _cases():
    yield "ckpt", "model.embed_tokens.weight_codes"  # an embedding, blocks of 64, rule mse
    yield "ckpt", "model.layers.0.mlp.down_proj.weight_codes"
    yield "ct", "model.layers.0.mlp.down_proj.weight_packed"
    yield "col.safetensors", "codes"  # axis 0, blocks of 16, 50 rows: the last block is padded
    yield "cube.safetensors", "codes"  # axis 1 of three
    yield "vec.safetensors", "codes"  # a vector: one row, 100 values
    yield "pair", "b.safetensors:codes"  # a name two files share is FILE:NAME
    yield "gpt.safetensors", "mlp.experts.gate_up_proj_blocks"


@pytest.mark.parametrize("path, name", list(_cases()))
def test_stored_tensor_detail_and_blocks_match_the_library(client, path, name):
    mx = CODES[path][name]
    d = ok(client.get("/api/model/tensor", params={"path": path, "name": name}))
    rows = _as_rows(mx)
    assert d["stored"] and d["shape"] == list(mx.shape) and d["axis"] == mx.axis
    assert d["block_size"] == mx.block_size and d["rows"] == rows.shape[0]
    assert d["blocks_per_row"] == mx.scales.shape[mx.axis]
    want = {int(b) - 127: int(n) for b, n in zip(*torch.unique(mx.scales, return_counts=True))}
    assert {e["exponent"]: e["blocks"] for e in d["scale_exponents"]} == want
    assert d["code_counts"] == _codes(mx) and sum(d["code_counts"]) == mx.numel()
    if path in ("ckpt", "col.safetensors", "pair"):
        assert d["scale_rule"] == mx.scale_rule  # recorded by the format
    bs, n = mx.block_size, d["blocks_per_row"]
    for row, block in {(0, 0), (rows.shape[0] - 1, n - 1), (rows.shape[0] // 2, n // 2)}:
        b = ok(client.get("/api/model/block", params={"path": path, "name": name, "row": row, "block": block}))
        assert b["values"] == rows[row, block * bs:(block + 1) * bs].tolist()
    r = client.get("/api/model/block", params={"path": path, "name": name, "row": rows.shape[0], "block": 0})
    assert r.status_code == 400 and "outside" in r.json()["error"]


def test_a_pair_that_cannot_be_decoded_is_named(tmp_path):
    save_file({"x.weight_packed": torch.zeros(4, 16, dtype=torch.uint8),
               "x.weight_scale": torch.zeros(4, 3, dtype=torch.uint8),  # 3 scales for 32 values
               "y.weight_codes": torch.zeros(4, 16, dtype=torch.uint8),
               "y.weight_scales": torch.zeros(4, 1, dtype=torch.uint8)}, str(tmp_path / "odd.safetensors"))
    c = TestClient(create_app(models_dir=str(tmp_path)))
    t = ok(c.get("/api/model", params={"path": "odd.safetensors"}))
    assert {x["kind"] for x in t["tensors"]} == {"other"}
    text = " ".join(t["warnings"])
    assert "x.weight_packed" in text and "y.weight_codes" in text and "mxfp4_config.json" in text


def test_a_cli_checkpoint_shows_the_qsnr_recorded_when_it_was_quantized(tmp_path):
    from mx_tiny_models import save_tiny_folder

    from mxfp4.cli import main

    save_tiny_folder(tmp_path / "float")
    assert main(["quantize", str(tmp_path / "float"), "-o", str(tmp_path / "q"), "--json",
                 str(tmp_path / "s.json")]) == 0
    layers = {r["name"]: r["qsnr_db"] for r in json.load(open(tmp_path / "s.json"))["layers"]}
    t = ok(TestClient(create_app(models_dir=str(tmp_path))).get("/api/model", params={"path": "q"}))
    shown = {x["name"][: -len(".weight_codes")]: x["recorded_qsnr_db"]
             for x in t["tensors"] if x["kind"] == STORED}
    assert shown.keys() == layers.keys()
    assert all(abs(shown[n] - layers[n]) < 1e-3 for n in layers)
