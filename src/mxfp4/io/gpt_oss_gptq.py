"""GPTQ for the experts of a GPT-OSS fine-tune, one layer at a time on calibration tokens.

The float model runs layer by layer on the calibration batches: embedding, then per layer the
attention sublayer (mxfp4.models.gpt_oss's AttentionBlock with the layer's weights, residual
included), the MLP's RMSNorm and the router (top-k, softmax over the k). Each expert's
W1 [2I, H] is quantized by GPTQ with the Hessian of the normed rows routed to it; then its
W2 [H, I] with the Hessian of those rows' SwiGLU activations computed through the quantized W1,
so that W2 also makes up for W1's error. An expert that no calibration row reached is rounded
to nearest. The layer then runs again with its quantized experts (mxfp4.nn.MoE) to give the
next layer its input: sequential GPTQ, each layer calibrated on what the quantized model feeds
it. The router stays float, as published checkpoints keep it.

Memory: the embedding, one layer's non-expert weights (float32, on `device`), its float experts
(as stored, on the CPU; each moves to `device` alone), the calibration hidden states (float32),
and the quantized layers that the output has not asked for yet.
"""

from __future__ import annotations

import torch

from ..algorithms.gptq import HessianAccumulator, gptq_quantize
from ..nn.moe import MoE, route_reference, swiglu
from ..ops import quantize
from .gpt_oss_checkpoint import check_values, open_shard
from .gpt_oss_hf import quantize_experts

_EXPERTS = {"gate_up_proj": "mlp.w1.weight", "down_proj": "mlp.w2.weight"}


def routed_rows(x: torch.Tensor, router_weight, router_bias, k: int) -> list[torch.Tensor]:
    """For each expert, the indices of the rows of x [T, H] that the router sends to it."""
    ids, _ = route_reference(x, router_weight, router_bias, k)
    return [(ids == e).any(dim=1).nonzero()[:, 0] for e in range(router_weight.shape[0])]


def hessian(x: torch.Tensor) -> torch.Tensor:
    """2/n · xᵀx of the rows x [n, K], as HessianAccumulator gives it to gptq_quantize."""
    acc = HessianAccumulator(x.shape[1], device=x.device)
    acc.add(x)
    return acc.result()


def quantize_layer(x, router_weight, router_bias, w1, b1, w2, b2, *, k: int, alpha: float,
                   limit: float, scale_rule: str, names=("w1", "w2"), damp: float = 0.01):
    """GPTQ of one layer's float experts w1 [E, H, 2I] and w2 [E, I, H] (transformers' layout)
    on the normed rows x [T, H]; returns (MXTensor w1 [E, 2I, H], its QSNR dB, MXTensor w2
    [E, H, I], its QSNR dB, the experts that got no rows and were rounded to nearest)."""
    rows = routed_rows(x, router_weight, router_bias, k)
    w1_hat = {}  # expert -> its quantized W1, until its W2 is done

    def rtn(ref):
        return quantize(ref, axis=1, scale_rule=scale_rule)

    def gptq(ref, inputs):
        return gptq_quantize(ref, hessian(inputs), scale_rule=scale_rule, damp=damp)

    def first(e, ref):  # ref: W1[e] [2I, H]
        if not len(rows[e]):
            return rtn(ref)
        w1_hat[e] = gptq(ref, x[rows[e]])
        return w1_hat[e]

    def second(e, ref):  # ref: W2[e] [H, I]
        if e not in w1_hat:
            return rtn(ref)
        h = x[rows[e]] @ w1_hat.pop(e).dequantize(torch.float32).T + b1[e]
        return gptq(ref, swiglu(h, alpha, limit))

    q1, qsnr1 = quantize_experts(w1, names[0], scale_rule, x.device, first)
    q2, qsnr2 = quantize_experts(w2, names[1], scale_rule, x.device, second)
    return q1, qsnr1, q2, qsnr2, [e for e in range(len(rows)) if not len(rows[e])]


class ExpertGPTQ:
    """The sequential GPTQ pass over a GPT-OSS folder's layers, run as far as the output needs.

    `take(key)` gives (MXTensor, QSNR dB, report kind, bytes as stored) for an expert tensor
    such as model.layers.3.mlp.experts.down_proj, running the layers up to 3 first if needed,
    so that the output shards can be written in their own order.
    """

    def __init__(self, config: dict, expected: dict, where: dict, calibration, *,
                 scale_rule: str, device, damp: float = 0.01):
        from ..models.gpt_oss import GptOss, GptOssConfig, Step

        self.expected, self.where, self.device = expected, where, torch.device(device)
        self.rule, self.damp = scale_rule, damp
        self.model = GptOss(GptOssConfig.from_dict(config), torch.float32)  # on meta
        self.next_layer, self.ready = 0, {}
        self._place(self.model, self._read("embedding."), "embedding.")
        ids = [self.model.check_inputs(batch)[0] for batch in calibration]
        pos = [torch.arange(t.shape[1], device=self.device).expand(t.shape) for t in ids]
        # what AttentionBlock reads per batch (positions, RoPE tables): calibration rows have no padding
        self.steps = [Step(p, *self.model.rope.cos_sin(p)) for p in pos]
        with torch.no_grad():
            self.hidden = [self.model.embedding(t) for t in ids]
        self.model.embedding.to("meta")

    def take(self, key: str):
        layer = int(key.split(".")[2])
        while key not in self.ready and self.next_layer <= layer:
            self._run_layer(self.next_layer)
            self.next_layer += 1
        return self.ready.pop(key)

    def _read(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors whose canonical names start with `prefix`, by the rest of the name:
        float32 on the device, except the float experts (as stored, on the CPU); q/k/v fused."""
        files = {}
        for name, want in self.expected.items():
            if want.canonical.startswith(prefix):
                files.setdefault(self.where[name], []).append(name)
        parts = {}
        for file, names in files.items():
            with open_shard(file) as f:
                for name in names:
                    t = f.get_tensor(name)
                    check_values(file, name, t)
                    want = self.expected[name]
                    parts.setdefault(want.canonical, [None] * want.parts)[want.part] = t
        out = {}
        for canonical, pieces in parts.items():
            t, short = torch.cat(pieces), canonical[len(prefix):]
            out[short] = t if short in _EXPERTS.values() else t.to(self.device, torch.float32)
        return out

    @staticmethod
    def _place(module, tensors: dict, prefix: str = "") -> None:
        for name, t in tensors.items():
            owner, attr = f"{prefix}{name}".rsplit(".", 1)
            setattr(module.get_submodule(owner), attr, torch.nn.Parameter(t, requires_grad=False))

    @torch.no_grad()
    def _run_layer(self, i: int) -> None:
        c, block = self.model.config, self.model.blocks[i]
        t = self._read(f"blocks.{i}.")
        self._place(block, {n: v for n, v in t.items() if n.startswith(("attn.", "mlp.norm."))})
        after_attn = [block.attn(x, step) for x, step in zip(self.hidden, self.steps)]
        x = torch.cat([block.mlp.norm(h).reshape(-1, c.hidden_size) for h in after_attn])
        keys = {w: f"model.layers.{i}.mlp.experts.{p}" for p, w in _EXPERTS.items()}
        w1, w2 = t["mlp.w1.weight"], t["mlp.w2.weight"]
        q1, qsnr1, q2, qsnr2, unreached = quantize_layer(
            x, t["mlp.router.weight"], t["mlp.router.bias"], w1, t["mlp.w1.bias"], w2,
            t["mlp.w2.bias"], k=c.experts_per_token, alpha=c.swiglu_alpha,
            limit=c.swiglu_limit, scale_rule=self.rule, names=tuple(keys.values()),
            damp=self.damp)
        kind = "experts" + (f" (no calibration tokens, rtn: {' '.join(map(str, unreached))})"
                            if unreached else "")
        for w, q, qsnr, stored in (("mlp.w1.weight", q1, qsnr1, w1),
                                   ("mlp.w2.weight", q2, qsnr2, w2)):
            self.ready[keys[w]] = (q, qsnr, kind, stored.nbytes)
        # the next layer's input comes through the quantized experts, as it will at inference
        block.mlp.moe = MoE(t["mlp.router.weight"], t["mlp.router.bias"], q1.to(self.device),
                            t["mlp.w1.bias"], q2.to(self.device), t["mlp.w2.bias"],
                            experts_per_token=c.experts_per_token, swiglu_alpha=c.swiglu_alpha,
                            swiglu_limit=c.swiglu_limit)
        block.mlp.backend = "reference"  # float32 math on any device
        self.hidden = [block.mlp(h) for h in after_attn]
        block.mlp.moe = None
        block.to("meta")  # this layer's weights are no longer needed
