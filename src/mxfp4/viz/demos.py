"""The visualizer's worked examples: a matmul step by step, a tiny MoE layer, model memory.

Quantization and products go through mxfp4.quantize / linear / matmul; memory figures come from
the real bit counts (4-bit codes plus one 8-bit scale per block) and published model shapes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..format import BLOCK_SIZE, E2M1_VALUES, e8m0_value
from ..ops import linear, matmul, quantize
from ..tensor import MXTensor
from .api import CODE_BITS, SCALE_BITS, scale_info, unpack_codes

GPU_BYTES = 80e9  # one 80 GB accelerator (H100/H200-class), decimal gigabytes
BITS_PER_MX_ELEMENT = CODE_BITS + SCALE_BITS / BLOCK_SIZE  # 4.25

# Shapes from the models' published config.json files.
GPT_OSS = {
    "GPT-OSS-20B": dict(layers=24, experts=32, top_k=4, hidden=2880, intermediate=2880,
                        vocab=201088, heads=64, kv_heads=8, head_dim=64),
    "GPT-OSS-120B": dict(layers=36, experts=128, top_k=4, hidden=2880, intermediate=2880,
                         vocab=201088, heads=64, kv_heads=8, head_dim=64),
}
DENSE = {
    "7B (Llama-2-7B shape)": dict(layers=32, hidden=4096, intermediate=11008, vocab=32000,
                                  heads=32, kv_heads=32),
    "70B (Llama-2-70B shape)": dict(layers=80, hidden=8192, intermediate=28672, vocab=32000,
                                    heads=64, kv_heads=8),
}


def _matrix_json(t: torch.Tensor) -> list:
    return [[float(v) for v in row] for row in t.tolist()]


def matmul_steps(m: int = 2, n: int = 2, k: int = 32, block_size: int = 8, seed: int = 0,
                 scale_rule: str = "floor", a=None, b=None) -> dict:
    """C = A @ B.T with A [m, k] and B [n, k] quantized along K, one block pair per step.

    Each step adds scale_a * scale_b * sum(a_i * b_i) over one block to C[i, j]'s accumulator,
    as in the OCP dot product; the last step of each C[i, j] ends at the library's matmul value.
    """
    gen = torch.Generator().manual_seed(seed)
    A = torch.tensor(a, dtype=torch.float32) if a is not None else torch.randn(m, k, generator=gen)
    B = torch.tensor(b, dtype=torch.float32) if b is not None else torch.randn(n, k, generator=gen)
    qa = quantize(A, block_size=block_size, scale_rule=scale_rule)
    qb = quantize(B, block_size=block_size, scale_rule=scale_rule)
    ea = torch.tensor(E2M1_VALUES, dtype=torch.float64)[unpack_codes(qa.codes).long()]
    eb = torch.tensor(E2M1_VALUES, dtype=torch.float64)[unpack_codes(qb.codes).long()]
    c_mx = matmul(qa, qb)
    c_float = A.double() @ B.double().T
    steps = []
    for i in range(m):
        for j in range(n):
            acc = 0.0
            for kb in range(k // block_size):
                k0, k1 = kb * block_size, (kb + 1) * block_size
                sa, sb = int(qa.scales[i, kb]), int(qb.scales[j, kb])
                dot = float((ea[i, k0:k1] * eb[j, k0:k1]).sum())
                partial = e8m0_value(sa) * e8m0_value(sb) * dot
                acc += partial
                step = {"i": i, "j": j, "block": kb, "k0": k0, "k1": k1, "scale_a": scale_info(sa),
                        "scale_b": scale_info(sb), "dot_e2m1": dot, "partial": partial, "acc": acc,
                        "last": k1 == k}
                if k1 == k:
                    step.update(c_mx=float(c_mx[i, j]), c_float=float(c_float[i, j]))
                steps.append(step)
    accs = torch.tensor([s["acc"] for s in steps if s["last"]], dtype=torch.float64).reshape(m, n)
    err = (c_mx.double() - c_float)
    return {"m": m, "n": n, "k": k, "block_size": block_size, "scale_rule": scale_rule,
            "a": _matrix_json(A), "b": _matrix_json(B),
            "a_codes": unpack_codes(qa.codes).tolist(), "b_codes": unpack_codes(qb.codes).tolist(),
            "a_decoded": _matrix_json(qa.dequantize()), "b_decoded": _matrix_json(qb.dequantize()),
            "a_scales": [[scale_info(int(s)) for s in row] for row in qa.scales.tolist()],
            "b_scales": [[scale_info(int(s)) for s in row] for row in qb.scales.tolist()],
            "steps": steps, "c_mx": _matrix_json(c_mx), "c_float": _matrix_json(c_float),
            "steps_match_library": bool(torch.allclose(accs, c_mx.double(), rtol=1e-6, atol=1e-6)),
            "max_abs_error": float(err.abs().max()),
            "relative_error": float(err.norm() / c_float.norm()) if float(c_float.norm()) else 0.0}


def _linear(x, w):
    """mxfp4.linear for an MXFP4 weight, torch's for the float reference."""
    return linear(x, w) if isinstance(w, MXTensor) else F.linear(x, w)


def _swiglu_expert(x, w1, w2):
    gate, up = _linear(x, w1).chunk(2, dim=-1)
    return _linear(F.silu(gate) * up, w2)


def moe_layer(tokens: int = 4, experts: int = 8, top_k: int = 2, hidden: int = 64,
              seed: int = 0) -> dict:
    """A tiny GPT-OSS-style MoE layer: BF16-class router, top-k, softmax over the chosen logits,
    SwiGLU experts whose weights are MXFP4 (mxfp4.linear), weighted combine; compared with the
    same layer in float32."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, hidden, generator=gen)
    router = torch.randn(experts, hidden, generator=gen) / math.sqrt(hidden)
    w1 = [torch.randn(2 * hidden, hidden, generator=gen) / math.sqrt(hidden) for _ in range(experts)]
    w2 = [torch.randn(hidden, hidden, generator=gen) / math.sqrt(hidden) for _ in range(experts)]
    q1 = [quantize(w) for w in w1]
    q2 = [quantize(w) for w in w2]
    logits = x @ router.T
    top = torch.topk(logits, top_k, dim=-1)
    weights = torch.softmax(top.values, dim=-1)
    out = []
    for t in range(tokens):
        y_mx = torch.zeros(hidden)
        y_ref = torch.zeros(hidden)
        chosen = []
        for slot in range(top_k):
            e = int(top.indices[t, slot])
            w = float(weights[t, slot])
            o_mx = _swiglu_expert(x[t:t + 1], q1[e], q2[e])[0]
            o_ref = _swiglu_expert(x[t:t + 1], w1[e], w2[e])[0]
            y_mx += w * o_mx
            y_ref += w * o_ref
            chosen.append({"expert": e, "logit": float(top.values[t, slot]), "weight": w,
                           "output_norm": float(o_mx.norm()),
                           "relative_error": float((o_mx - o_ref).norm() / o_ref.norm())})
        out.append({"token": t, "input_head": x[t, :8].tolist(), "logits": logits[t].tolist(),
                    "chosen": chosen, "output_head": y_mx[:8].tolist(),
                    "reference_head": y_ref[:8].tolist(),
                    "relative_error": float((y_mx - y_ref).norm() / y_ref.norm())})
    expert_params = experts * 3 * hidden * hidden
    return {"tokens": tokens, "experts": experts, "top_k": top_k, "hidden": hidden, "seed": seed,
            "per_token": out,
            "expert_bytes": {"bf16": expert_params * 2,
                             "mxfp4": sum(q.nbytes for q in q1 + q2)}}


def memory(experts: int, expert_params_m: float, other_params_m: float = 0.0) -> dict:
    """Bytes of a MoE model: expert weights in MXFP4 or BF16, the rest always BF16."""
    expert_params = experts * expert_params_m * 1e6
    other = other_params_m * 1e6
    bf16 = (expert_params + other) * 2
    mx = expert_params * BITS_PER_MX_ELEMENT / 8 + other * 2
    return {"experts": experts, "expert_params_m": expert_params_m, "other_params_m": other_params_m,
            "total_params": expert_params + other, "bf16_bytes": bf16, "mxfp4_bytes": mx,
            "ratio": bf16 / mx, "gpu_bytes": GPU_BYTES, "fits_bf16": bf16 <= GPU_BYTES,
            "fits_mxfp4": mx <= GPU_BYTES, "bits_per_mxfp4_element": BITS_PER_MX_ELEMENT}


def gpt_oss_split(c: dict) -> dict:
    """Parameters of a GPT-OSS model: MoE expert weights (MXFP4 in the release) and the rest."""
    h, i = c["hidden"], c["intermediate"]
    per_expert_layer = 3 * h * i  # mlp1 [2i, h] + mlp2 [h, i]
    q_out = c["heads"] * c["head_dim"]
    kv_out = 2 * c["kv_heads"] * c["head_dim"]
    attn = h * (q_out + kv_out) + (q_out + kv_out) + q_out * h + h + c["heads"]  # + biases, sinks
    router = h * c["experts"] + c["experts"]
    expert_biases = c["experts"] * (2 * i + h)
    per_layer_other = attn + router + expert_biases + 2 * h  # two norms
    other = c["layers"] * per_layer_other + 2 * c["vocab"] * h + h  # embed, unembed, final norm
    return {"experts": c["experts"], "expert_params": c["layers"] * per_expert_layer,
            "other_params": other}


def presets() -> list[dict]:
    out = []
    for name, cfg in GPT_OSS.items():
        s = gpt_oss_split(cfg)
        out.append({"name": name, "experts": s["experts"],
                    "expert_params_m": round(s["expert_params"] / 1e6, 1),
                    "other_params_m": round(s["other_params"] / 1e6, 1),
                    "total_params": s["experts"] * s["expert_params"] + s["other_params"],
                    "note": f"{cfg['layers']} layers x {cfg['experts']} experts (top-{cfg['top_k']}); "
                            "attention, router, embeddings stay BF16"})
    return out


def dense_split(c: dict) -> dict:
    h, i = c["hidden"], c["intermediate"]
    head_dim = h // c["heads"]
    linear_params = c["layers"] * (2 * h * h + 2 * h * c["kv_heads"] * head_dim + 3 * h * i)
    other = 2 * c["vocab"] * h + c["layers"] * 2 * h + h
    return {"mx_params": linear_params, "bf16_params": other}


def model_memory_table() -> list[dict]:
    """7B / 70B dense and GPT-OSS-120B: BF16 vs MXFP4 bytes from real bit counts."""
    rows = []
    splits = [(name, dense_split(c), "all linear layers MXFP4; embeddings, head, norms BF16")
              for name, c in DENSE.items()]
    g = gpt_oss_split(GPT_OSS["GPT-OSS-120B"])
    splits.append(("GPT-OSS-120B", {"mx_params": g["experts"] * g["expert_params"],
                                    "bf16_params": g["other_params"]},
                   "MoE expert weights MXFP4, everything else BF16 (as released)"))
    for name, s, note in splits:
        total = s["mx_params"] + s["bf16_params"]
        bf16 = total * 2
        mx = s["mx_params"] * BITS_PER_MX_ELEMENT / 8 + s["bf16_params"] * 2
        rows.append({"model": name, "params": total, "mxfp4_params": s["mx_params"],
                     "bf16_bytes": bf16, "mxfp4_bytes": mx, "ratio": bf16 / mx,
                     "fits_80gb": mx <= GPU_BYTES, "note": note})
    return rows
