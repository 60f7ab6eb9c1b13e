"""The baselines of `mxfp4 bench moe` and the checked timer every column goes through.

The same layer in bf16 torch, and on OpenAI triton_kernels when it can be imported (its operands
are views of our MXFP4 bytes). `checked_time` compares a function with the fp32 reference before
it times it: a wrong or failing column is reported with its error, never timed.
"""

from __future__ import annotations

import importlib.metadata
import os
import statistics

import torch

REL_TOL = 1e-2  # relative Frobenius error against the fp32 reference: bf16 activations


def graph_time_us(fn, inputs, replays=20) -> float:
    """Median time of one fn(x) per input, from CUDA-graph replays over all inputs."""
    for x in inputs:  # compile and warm up outside the capture
        fn(x)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = [fn(x) for x in inputs]
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(inputs))
    del outs, graph
    return statistics.median(times)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative Frobenius error of out against the fp32 reference output ref."""
    out = out.float().reshape(ref.shape)
    return ((out - ref).norm() / ref.norm()).item()


def checked_time(fn, inputs, ref) -> dict:
    """{"rel_err", "us"} of fn, timed over inputs only after fn(inputs[0]) is within REL_TOL of
    ref; {"error"} (and "rel_err" where there is one) if it fails or is wrong: never timed."""
    entry = {}
    try:
        entry["rel_err"] = err = rel_err(fn(inputs[0]), ref)
        if not err <= REL_TOL:  # also catches NaN
            raise RuntimeError(f"differs from the reference by {err:.3g} (> {REL_TOL})")
        entry["us"] = graph_time_us(fn, inputs)
    except Exception as e:  # a kernel that fails to compile or is wrong is reported, not timed
        entry["error"] = _said(e)
        if inputs[0].is_cuda:
            torch.cuda.synchronize()
    return entry


def _said(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"[:300]


def bf16_torch_moe(m, w1, w2):
    """The same layer in bf16 torch (cuBLAS/CUTLASS grouped GEMMs), capturable: a baseline.
    Routed by the reference's own fp32 routing: bf16 logits pick other experts for near ties."""
    from ..nn.moe import route_reference

    E, k = m.num_experts, m.experts_per_token
    lim, alpha = m.swiglu_limit, m.swiglu_alpha

    def fn(x):
        top_ids, top_wts = route_reference(x, m.router_weight, m.router_bias, k)
        wts, ids = top_wts.flatten(), top_ids.flatten()
        order = torch.argsort(ids, stable=True)
        counts = torch.zeros(E, dtype=torch.int32, device=x.device).scatter_add_(
            0, ids, torch.ones_like(ids, dtype=torch.int32))
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        tok, eid = order // k, ids[order]
        h = torch._grouped_mm(x[tok], w1.transpose(1, 2), offs=offs) + m.b1[eid]
        gate, lin = h[:, 0::2].clamp(max=lim), h[:, 1::2].clamp(-lim, lim)
        a = (gate * torch.sigmoid(alpha * gate) * (lin + 1)).bfloat16()
        y = (torch._grouped_mm(a, w2.transpose(1, 2), offs=offs) + m.b2[eid]).float()
        out = torch.zeros(x.shape[0], x.shape[1], dtype=torch.float32, device=x.device)
        return out.index_add_(0, tok, y * wts[order, None]).bfloat16()

    return fn


def _bf16_weights(w, chunk=8):
    """Dequantize [E, N, K] expert by expert chunk (the codec works in fp32)."""
    from ..tensor import MXTensor

    E, N, K = w.shape
    out = torch.empty(E, N, K, dtype=torch.bfloat16, device=w.device)
    for e in range(0, E, chunk):
        part = MXTensor(w.codes[e:e + chunk], w.scales[e:e + chunk], (min(chunk, E - e), N, K), 2)
        out[e:e + chunk] = part.dequantize(torch.bfloat16)
    return out


def tk_operands(w) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [E, K/2, N], scales [E, K/32, N]) of an MXTensor w [E, N, K]: the weight operand of
    triton_kernels (y = x @ w, two E2M1 codes a byte and E8M0 scales along axis 1, column-major as
    its Hopper kernels require). Transposed views of w's bytes: the same codes, not requantized."""
    if len(w.shape) != 3 or w.axis != 2 or w.block_size != 32:
        raise ValueError(f"expected an MXTensor [E, N, K] in blocks of 32 along K, got {w!r}")
    return w.codes.transpose(1, 2), w.scales.transpose(1, 2)


def triton_kernels_info():
    """None when triton_kernels cannot be imported (printing why); else where it came from, its
    distribution version if installed, and the commit named by a COMMIT file beside it."""
    try:
        import triton_kernels
    except Exception as e:  # not installed, or built for another triton
        print(f"triton_kernels not importable ({type(e).__name__}: {e}): no triton_kernels column")
        return None
    root = os.path.dirname(os.path.dirname(os.path.abspath(triton_kernels.__file__)))
    info = {"path": root}
    try:
        info["version"] = importlib.metadata.version("triton_kernels")
    except importlib.metadata.PackageNotFoundError:
        pass
    if os.path.isfile(os.path.join(root, "COMMIT")):
        info["commit"] = open(os.path.join(root, "COMMIT")).read().strip()
    return info


def triton_kernels_moe(m):
    """T -> the same layer on OpenAI triton_kernels, capturable: a baseline. Its MoE chain (topk,
    ragged metadata, matmul_ogs W1 with SwiGLU fused, W2 with the weighted combine) on m's MXFP4
    weights, converted once and losslessly to its Hopper layouts. Router logits in fp32 torch
    as the reference computes them. Its scale layout is swizzled for the kernel's warp count:
    4 up to 512 tokens, 8 above, the rule of its own bench (bench/bench_mlp.py)."""
    from triton_kernels.matmul_ogs import (FnSpecs, FusedActivation, GatherIndx, PrecisionConfig,
                                           RoutingData, ScatterIndx, matmul_ogs)
    from triton_kernels.swiglu import swiglu_fn
    from triton_kernels.tensor import FP4, convert_layout, make_ragged_tensor_metadata, wrap_torch_tensor
    from triton_kernels.tensor_details import layout
    from triton_kernels.topk import topk

    E, k = m.num_experts, m.experts_per_token
    wr, br, b1, b2 = (t.float() for t in (m.router_weight, m.router_bias, m.b1, m.b2))
    act = FusedActivation(FnSpecs("swiglu", swiglu_fn, ("alpha", "limit"), reduction_n=2),
                          (m.swiglu_alpha, m.swiglu_limit))
    value_layout, value_opts = layout.make_default_matmul_mxfp4_w_layout(mx_axis=1)
    values, scales = [], []
    for w in (m.w1, m.w2):
        codes, s = tk_operands(w)
        values.append(convert_layout(wrap_torch_tensor(codes, dtype=FP4), value_layout, **value_opts))
        scales.append(wrap_torch_tensor(s))
    precisions = {}

    def make(T):
        warps = 4 if T <= 512 else 8
        if warps not in precisions:
            sl, opts = layout.make_default_matmul_mxfp4_w_scale_layout(mx_axis=1, num_warps=warps)
            precisions[warps] = [PrecisionConfig(weight_scale=convert_layout(s, sl, **opts)) for s in scales]
        pc1, pc2 = precisions[warps]

        def fn(x):
            sparse = topk(x.float() @ wr.T + br, k, apply_softmax=True)  # as route_reference
            meta = sparse.mask_metadata
            gather = GatherIndx(meta.col_sorted_indx, meta.row_sorted_indx)
            scatter = ScatterIndx(meta.row_sorted_indx, meta.col_sorted_indx)
            ragged = make_ragged_tensor_metadata(meta.col_sum, meta.row_sorted_indx.shape[0])
            gates = sparse.vals.flatten()[meta.col_sorted_indx]
            rdata = RoutingData(gates, ragged.slice_sizes, E, k, ragged)
            h = matmul_ogs(x, values[0], b1, rdata, gather_indx=gather, precision_config=pc1,
                           fused_activation=act)
            return matmul_ogs(h, values[1], b2, rdata, scatter_indx=scatter, precision_config=pc2,
                              gammas=gates)
        return fn
    return make


def baselines(m, bf16: bool) -> tuple[dict, dict]:
    """({name: T -> fn}, {name: version facts}) of the baselines this run can time."""
    out, info = {}, {}
    if bf16:
        w1, w2 = _bf16_weights(m.w1), _bf16_weights(m.w2)
        out["bf16_torch"] = lambda T: bf16_torch_moe(m, w1, w2)
    tk = triton_kernels_info()
    if tk is not None:
        built = {}

        def tk_make(T):  # set up on first use, so that a failure is this column's error
            if not built:
                built["make"] = triton_kernels_moe(m)
            return built["make"](T)
        out["triton_kernels"], info["triton_kernels"] = tk_make, tk
    return out, info


def baseline_note(names, versions: dict) -> str:
    """The notes' words on this run's baseline columns."""
    said = [f"Baselines, same run and inputs, each checked against the fp32 reference (relative "
            f"error <= {REL_TOL}) before it is timed; one that fails has no time and a `_error`."]
    if "bf16_torch" in names:
        said.append("bf16_torch: torch._grouped_mm on the dequantized bf16 weights, fp32 routing.")
    if "triton_kernels" in names:
        tk = {"commit": "unknown", "version": "unknown", **versions["triton_kernels"]}
        said.append(f"triton_kernels (commit {tk['commit']}, version {tk['version']}): its topk and "
                    f"matmul_ogs chain (SwiGLU and the weighted combine fused) on the same MXFP4 bytes "
                    f"in its Hopper layouts (scales for 4 warps up to T = 512, 8 above, as its "
                    f"bench_mlp.py), router logits in fp32.")
    else:
        said.append("triton_kernels could not be imported: no column.")
    return " ".join(said)
