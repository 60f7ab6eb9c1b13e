"""Host side of the warp-specialized MXFP4 x bf16 GEMM (kernels/ws_gemm_kernel.py, Gluon).

`ws_linear(x, w, bias)` = x @ dequantize(w).T + bias for bf16 x [..., K] and a plain MXTensor w
[N, K] (block 32, quantized along K), fp32 accumulation, bf16 out. Reference twin:
`mxfp4.ops.linear(x, w, bias, backend="reference")` (float32) and, on the device, float64 math
on the dequantized weight (benchmarks/ws_gemm_device.py).

The kernel is Gluon code written against triton 3.6's API (warp_specialize takes a list of
(function, args) pairs; the API moved in later releases) and Hopper instructions (TMA, wgmma,
setmaxnreg): it runs only on an sm_90 GPU with triton 3.6. `unsupported_reason` says why a
call cannot use it (pure Python: CI tests it); `ws_linear` raises with that reason.
This module imports no Gluon until a kernel is compiled, so it loads with any triton.
"""

from __future__ import annotations

import torch
import triton

from ..layouts import HopperWeight
from ..tensor import MXTensor

TRITON_SERIES = "3.6"  # the Gluon API this kernel is written against
CAPABILITY = (9, 0)  # wgmma and setmaxnreg: sm_90a
BLOCK = 32  # MXFP4 block size the decoder assumes (one scale per 32 elements)
BN, BK = 128, 64  # weight rows per tile (wgmma M; 64 for the widest token tiles), K per step
MIN_M = 16  # smaller batches take the GEMV kernels
SCALE_CHUNK = 16  # K steps of scale bytes the decoder loads at once (ws_gemm_kernel's)


def unsupported_reason(capability: tuple[int, int] | None, triton_version: str, x_dtype,
                       block_size: int, k: int, m: int = MIN_M) -> str | None:
    """Why the kernel cannot run this product, or None when it can.

    capability: the GPU's (major, minor), None for a CPU tensor; k: the weight's K; m: rows of x.
    """
    if capability is None:
        return "it needs CUDA tensors on an sm_90 (Hopper) GPU"
    if tuple(capability) != CAPABILITY:
        return f"it needs an sm_90 (Hopper) GPU, this one is sm_{capability[0]}{capability[1]}"
    if ".".join(triton_version.split(".")[:2]) != TRITON_SERIES:
        return (f"it is written for triton {TRITON_SERIES}'s Gluon API, found triton "
                f"{triton_version}")
    if x_dtype != torch.bfloat16:
        return f"it takes bfloat16 activations, got {x_dtype}"
    if block_size != BLOCK:
        return f"it decodes blocks of {BLOCK}, the weight has blocks of {block_size}"
    if k <= 0 or k % BLOCK:
        return f"K = {k} must be a positive multiple of {BLOCK} (TMA rows of whole 16-byte units)"
    if m < 1:
        return "x has no rows"
    return None


def _plain_2d(w) -> bool:
    return isinstance(w, MXTensor) and len(w.shape) == 2 and w.axis == 1


def use_ws_gemm(x: torch.Tensor, w) -> bool:
    """Dispatch rule: the v2 kernel for bf16 batches of at least MIN_M rows on sm_90 + triton
    3.6 with a plain 2-D MXTensor or a HopperWeight; everything else keeps the v1 kernels."""
    if not (_plain_2d(w) or isinstance(w, HopperWeight)):
        return False
    m = x.numel() // max(1, x.shape[-1]) if x.dim() else 0
    return m >= MIN_M and unsupported_reason(_capability(x.device), triton.__version__, x.dtype,
                                             w.block_size, w.shape[1], m) is None


def ws_config(m: int, n: int, k: int, sm_count: int = 132) -> dict:
    """Tile and launch parameters for an [m, k] x [n, k] product.

    BN = 128 weight rows x BM tokens, BM the batch rounded up to a power of two from 16 (at
    most 128). One consumer warpgroup (num_warps = 4) holds the fp32 accumulator, BN * BM / 128
    registers a thread. From m > 2048 two consumer warpgroups (num_warps = 8) own 64 weight
    rows x 256 tokens each (wgmma m64n256, 128 accumulator registers a thread): a 128 x 256
    tile reads half the x bytes per FLOP of the 64 x 256 one. There the loader warp is dropped
    (LOADER = False: the consumer issues its x copies, the decoder its codes), since ptxas
    compiles every partition under the kernel's cap (setmaxnreg only moves registers at run
    time): 8 + 4 warps at 168 registers fit the 64K-register file, 8 + 4 + 1 would be padded
    to 16 warps at 128. Split K while the tiles are fewer than half the SMs and each split
    keeps at least 8 steps of BK. DECODED (decoded W tiles in flight) and DECODERS (decoder
    partitions on alternate K steps) stay 2 and 1 until a device run says otherwise (the
    sweep in benchmarks/ws_gemm_device.py times 4 and 2).
    """
    bm = 16
    while bm < min(m, 128):
        bm *= 2
    # x + codes slots: enough bytes in flight per SM to cover memory latency at small M
    cfg = dict(BN=BN, BM=bm, SPLIT_K=1, GROUP_M=8, STAGES={16: 8, 32: 8, 64: 6}.get(bm, 4),
               DECODED=2, DECODERS=1, num_warps=4, maxnreg=168, DECODE_WARPS=4, DECODE_REGS=96,
               LOADER=True)
    if m > 2048:
        cfg.update(BM=256, STAGES=4, num_warps=8, LOADER=False)
    tiles = triton.cdiv(n, cfg["BN"]) * triton.cdiv(m, cfg["BM"])
    steps = triton.cdiv(k, BK)
    split = 1
    while tiles * split * 2 <= sm_count and steps // (split * 2) >= 8:
        split *= 2
    cfg["SPLIT_K"] = split
    return cfg


SMEM_BYTES = 232448  # an H100 CTA's shared memory (227 KB)
REGISTERS = 65536  # an SM's register file, 32-bit registers


def total_warps(cfg: dict) -> int:
    """Warps a CTA launches: consumer + decoder (+ the loader warp), padded to warpgroups."""
    warps = cfg["num_warps"] + cfg["DECODERS"] * cfg["DECODE_WARPS"] + (1 if cfg["LOADER"] else 0)
    return -(-warps // 4) * 4


def shared_bytes(cfg: dict) -> int:
    """Shared memory estimate: the x + codes ring, DECODED decoded W tiles, SCALE_CHUNK steps
    of scale bytes a decoder partition, the epilogue's layout conversion (about BN * BM bytes
    in triton 3.6, at least 8 KB) and the barriers; within 2 KB of what
    scripts/compile_sm90.py reports."""
    ring = cfg["STAGES"] * (cfg["BM"] * BK * 2 + cfg["BN"] * BK // 2)
    scales = cfg["DECODERS"] * SCALE_CHUNK * cfg["BN"] * BK // BLOCK
    decoded = cfg["DECODED"] * cfg["BN"] * BK * 2
    return ring + decoded + scales + max(cfg["BN"] * cfg["BM"], 8192) + 1024


def config_problem(cfg: dict) -> str | None:
    """Why this config cannot compile or run well on an H100, or None when it fits."""
    need = {"BN", "BM", "SPLIT_K", "GROUP_M", "STAGES", "DECODED", "DECODERS", "num_warps",
            "maxnreg", "DECODE_WARPS", "DECODE_REGS", "LOADER"}
    if set(cfg) != need:
        return f"config keys must be {sorted(need)}, got {sorted(cfg)}"
    bn, bm, nw, dw = cfg["BN"], cfg["BM"], cfg["num_warps"], cfg["DECODE_WARPS"]
    if bn not in (64, 128, 256) or bm not in (16, 32, 64, 128, 256):
        return f"BN must be 64, 128 or 256 and BM a power of two in 16..256, got {bn}, {bm}"
    if nw not in (4, 8) or dw not in (4, 8) or bn < 16 * dw:
        return f"num_warps and DECODE_WARPS must be 4 or 8 with BN >= 16 a decoder warp, got " \
               f"{nw}, {dw}, BN {bn}"
    parts, depth = cfg["DECODERS"], cfg["DECODED"]
    if parts not in (1, 2) or not 2 <= depth <= 6 or depth % parts or cfg["STAGES"] % parts:
        return f"DECODERS must be 1 or 2, dividing DECODED (2..6) and STAGES, got {parts}, " \
               f"{depth}, {cfg['STAGES']}"
    if parts == 2 and not cfg["LOADER"]:
        return "two decoder partitions need the loader warp (LOADER=True)"
    warps = total_warps(cfg)
    if cfg["maxnreg"] * warps * 32 > REGISTERS:
        return f"{warps} warps x {cfg['maxnreg']} registers exceed the {REGISTERS}-register file"
    # the registers of one wgmma's accumulator (m64nN: N / 2 a thread; warps along the weight
    # rows as in ws_gemm_kernel.acc_layout): at maxnreg 128 an m64n256 one fails in ptxas,
    # while two m64n128 ones (BN 256 x BM 128, 128 registers a thread in all) compile
    along_n = min(nw, bn // 16)
    acc = min(256, bm // (nw // along_n)) // 2
    if acc + 40 > cfg["maxnreg"]:
        return f"a wgmma's {acc} accumulator registers a thread do not fit maxnreg " \
               f"{cfg['maxnreg']} (ptxas compiles it under the kernel's cap)"
    if shared_bytes(cfg) > SMEM_BYTES:
        return f"about {shared_bytes(cfg)} bytes of shared memory, more than {SMEM_BYTES}"
    if not cfg["LOADER"] and 2 * cfg["maxnreg"] * warps * 32 <= REGISTERS:
        # H100, 2026-12-07: this family (two CTAs an SM, no loader warp) passed a small smoke
        # product but gave wrong results at 4096->14336 (rel. error 6.6e-2 at M = 16, 19 at
        # M = 64); the cause is not found, so it is refused rather than risked
        return "LOADER=False with two CTAs an SM gave wrong results on the H100"
    return None


def platform_reason(device: torch.device) -> str | None:
    """Why no Gluon kernel runs on this device and triton version at all, or None (the other
    arguments are values every kernel takes)."""
    return unsupported_reason(_capability(device), triton.__version__, torch.bfloat16, BLOCK,
                              BLOCK)


def _capability(device: torch.device):
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(device)


def _check(x, w, bias) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"ws_linear takes a tensor x, got {type(x).__name__}")
    if not isinstance(w, (MXTensor, HopperWeight)):
        raise TypeError(f"ws_linear takes an MXTensor or HopperWeight weight, got "
                        f"{type(w).__name__}")
    if isinstance(w, MXTensor) and (len(w.shape) != 2 or w.axis != 1):
        raise ValueError(f"the weight must be 2-D and quantized along K (axis 1), got shape "
                         f"{tuple(w.shape)} with axis={w.axis}")
    if x.dim() == 0 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"x's last dimension {tuple(x.shape)[-1:]} does not match the weight's "
                         f"K = {w.shape[1]}")
    n = w.shape[0]
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (n,)
                             or bias.dtype != torch.bfloat16 or bias.device != x.device):
        raise ValueError(f"bias must be a bf16 tensor of shape ({n},) on {x.device}, got "
                         f"{getattr(bias, 'shape', type(bias).__name__)} "
                         f"{getattr(bias, 'dtype', '')}")
    if w.codes.device != x.device:
        raise ValueError(f"x is on {x.device}, the weight on {w.codes.device}")
    why = unsupported_reason(_capability(x.device), triton.__version__, x.dtype, w.block_size,
                             w.shape[1])
    if why:
        raise RuntimeError(f"the warp-specialized MXFP4 GEMM cannot run here: {why}; use "
                           f"mxfp4.linear (the Triton v1 kernels) instead")


def ws_linear(x: torch.Tensor, w: MXTensor, bias: torch.Tensor | None = None,
              config: dict | None = None) -> torch.Tensor:
    """x @ dequantize(w).T + bias in bf16 (fp32 accumulation) on the warp-specialized kernel;
    w: a plain MXTensor [N, K] or its HopperWeight (layouts.prepack: a cheaper decode);
    config: ws_config's keys (default: ws_config for this product)."""
    why = config_problem(config) if config is not None else None
    if why:
        raise ValueError(f"ws_linear config {config}: {why}")
    _check(x, w, bias)
    n, k = w.shape
    x2 = _tma_ready(x.reshape(-1, k))
    m = x2.shape[0]
    out = torch.empty(m, n, dtype=torch.bfloat16, device=x.device)
    if m == 0:
        return out.reshape(*x.shape[:-1], n)
    from .linear import _sm_count
    cfg = dict(config or ws_config(m, n, k, _sm_count(x.device)))
    packed = isinstance(w, HopperWeight)
    kernel, args, kwargs, grid = launch_args(
        x2, _tma_ready(w.codes), w.scales.contiguous(), bias, out, cfg, packed=packed,
        fused=packed and w.max_scale <= 128)
    kernel[grid](*args, **kwargs)
    return out.reshape(*x.shape[:-1], n)


def _tma_ready(t: torch.Tensor) -> torch.Tensor:
    """t contiguous and starting on a 16-byte boundary, as a TMA descriptor needs (a view into
    another tensor can start anywhere): copied when it is not."""
    return t if t.is_contiguous() and t.data_ptr() % 16 == 0 else t.clone(memory_format=torch.contiguous_format)


def ws_dequantize(w) -> torch.Tensor:
    """bf16 [N, K] weights through the GEMM's own decoders (decode_tile for a plain MXTensor,
    decode_packed_tile for a HopperWeight), for the device's bit-exact check against
    mxfp4.codec.dequantize_blocks."""
    if isinstance(w, HopperWeight):
        return _dequantize_packed(w)
    if not _plain_2d(w):
        raise TypeError("ws_dequantize takes a 2-D MXTensor quantized along K or a HopperWeight")
    n, k = w.shape
    why = unsupported_reason(_capability(w.codes.device), triton.__version__, torch.bfloat16,
                             w.block_size, k)
    if why:
        raise RuntimeError(f"the warp-specialized decoder cannot run here: {why}")
    out = torch.empty(n, k, dtype=torch.bfloat16, device=w.codes.device)
    kernel, args, grid = decode_args(w.codes.contiguous(), w.scales.contiguous(), out)
    kernel[grid](*args, BN=BN, BK=BK, num_warps=4)
    return out


def _dequantize_packed(w: HopperWeight) -> torch.Tensor:
    why = unsupported_reason(_capability(w.device), triton.__version__, torch.bfloat16,
                             w.block_size, w.shape[1])
    if why:
        raise RuntimeError(f"the warp-specialized decoder cannot run here: {why}")
    from .ws_decode import ws_decode_packed_kernel
    np_, kp = w.codes.shape[0], w.codes.shape[1] * 2
    out = torch.empty(np_, kp, dtype=torch.bfloat16, device=w.device)
    ws_decode_packed_kernel[(np_ // BN, kp // BK)](w.codes, w.scales, out, np_, kp, BN=BN, BK=BK,
                                                   FUSED=w.max_scale <= 128, num_warps=4)
    n, k = w.shape
    return out[:n, :k]


def decode_args(codes, scales, out):
    from .ws_decode import ws_decode_kernel
    n, k = out.shape
    return ws_decode_kernel, (codes, scales, out, n, k), (triton.cdiv(n, BN), triton.cdiv(k, BK))


def launch_args(x2, codes, scales, bias, out, cfg: dict, packed: bool = False,
                fused: bool = False):
    """(kernel, args, keyword args, grid) of one launch; also what scripts/compile_sm90.py
    compiles offline (with CPU tensors) for the resource report. packed: codes and scales of
    a HopperWeight (fused: its max_scale <= 128)."""
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from .ws_gemm_kernel import ws_gemm_kernel
    cfg = dict(cfg)
    bn, bm, split = cfg.pop("BN"), cfg.pop("BM"), cfg.pop("SPLIT_K")
    m, k = x2.shape
    n = out.shape[1]
    x_desc = TensorDescriptor.from_tensor(
        x2, [bm, BK], gl.NVMMASharedLayout.get_default_for([bm, BK], gl.bfloat16))
    q_desc = TensorDescriptor.from_tensor(
        codes, [bn, BK // 2], gl.NVMMASharedLayout.get_default_for([bn, BK // 2], gl.uint8))
    k_chunk, split, tiles, ws, locks = split_k(m, n, k, bm, bn, split, out)
    args = (x_desc, q_desc, scales, bias if bias is not None else out, out, ws, locks,
            m, n, k, scales.shape[0 if packed else 1], codes.shape[0], out.stride(0), k_chunk)
    kwargs = dict(HAS_BIAS=bias is not None, SPLIT_K=split, PACKED=packed, FUSED=fused, **cfg)
    return ws_gemm_kernel, args, kwargs, (tiles, split)


def split_k(m: int, n: int, k: int, bm: int, bn: int, split: int, out: torch.Tensor):
    """(K per split, splits, tiles, fp32 workspace, arrival counters) of a launch split in
    `split` along K (no empty splits; out stands in for the buffers without a split)."""
    steps = triton.cdiv(k, BK)
    k_chunk = triton.cdiv(steps, split) * BK
    split = triton.cdiv(steps * BK, k_chunk)
    tiles = triton.cdiv(m, bm) * triton.cdiv(n, bn)
    if split == 1:
        return k_chunk, split, tiles, out, out
    from .linear import _LOCK_SIZE, arrival_counters
    if tiles > _LOCK_SIZE:
        raise ValueError(f"split-K needs {tiles} tile counters, more than {_LOCK_SIZE}")
    ws = torch.empty(split, m, n, dtype=torch.float32, device=out.device)
    return k_chunk, split, tiles, ws, arrival_counters(out.device)


def compile_args(m: int, n: int, k: int, sm_count: int = 132, packed: bool = False,
                 **overrides):
    """(kernel, args, keyword args) for an offline compile of the [m, k] x [n, k] product with
    CPU tensors standing in for CUDA ones (scripts/compile_sm90.py); overrides: config keys;
    packed: a HopperWeight (fused decode)."""
    x2 = torch.empty(m, k, dtype=torch.bfloat16)
    if packed:
        kp, np_ = -(-k // BK) * BK, -(-n // 128) * 128
        codes = torch.empty(np_, kp // 2, dtype=torch.uint8)
        scales = torch.empty(kp // BLOCK, np_, dtype=torch.uint8)
    else:
        codes = torch.empty(n, k // 2, dtype=torch.uint8)
        scales = torch.empty(n, k // BLOCK, dtype=torch.uint8)
    out = torch.empty(m, n, dtype=torch.bfloat16)
    cfg = dict(ws_config(m, n, k, sm_count), **overrides)
    kernel, args, kwargs, _ = launch_args(x2, codes, scales, None, out, cfg, packed=packed,
                                          fused=packed)
    return kernel, args, kwargs
