"""The fused MoE forward on GPU (or under TRITON_INTERPRET=1): routing, grouping, two grouped
W4A16 GEMMs. Reference twin: `mxfp4.nn.moe.moe_reference`.

No host synchronisation: buffer sizes depend only on T, k and E (worst-case block counts),
so the forward can be captured in a CUDA graph. Two paths, chosen from T alone:

decode (T * k <= DECODE_MAX_PAIRS), 3 launches, one (token, slot) pair per row block:
    router logits (the last of a token's programs does its top-k) -> W1 (+bias, SwiGLU) and,
    in the same launch, W2 (+bias, x routing weight, by pair) -> sum of each token's k rows.
batch, 6 launches + one memset (8 with tail GEMMs, MoEConfig.tail):
    router GEMM in tiles -> top-k + softmax + rank -> align (sorted pairs, block table) -> W1
    (+bias, SwiGLU) -> W2 (+bias, x routing weight, scattered back to token order) -> sum of
    each token's k rows.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace

import torch
import triton

from . import moe_gemv
from .moe_gemm import _combine_kernel, _w1_kernel, _w2_kernel
from .moe_routing import (_align_kernel, _logits_kernel, _logits_part_kernel, _route_kernel,
                          num_blocks_max, pad_pow2)
from .linear import arrival_counters
from .pdl import launch_options

DECODE_MAX_PAIRS = 16  # T <= 4 at k = 4: beyond, re-reading shared experts costs more


@dataclass(frozen=True)
class GemmConfig:
    """Tiles of one grouped GEMM: bm token rows x bn weight rows x bk along K (bk a multiple
    of 64; bn is shrunk until it divides the packed rows, a multiple of 64)."""
    bm: int
    bn: int
    bk: int
    warps: int = 4
    stages: int = 3
    group_m: int = 8
    maxnreg: int | None = None  # register cap: 128 lets two 8-warp (or four 4-warp) CTAs share an SM

    def launch(self) -> dict:
        opts = dict(num_warps=self.warps, num_stages=self.stages)
        if self.maxnreg:
            opts["maxnreg"] = self.maxnreg
        return opts


LOGITS_WARPS = 4  # decode router: warps per program (its last program also does the top-k)
LOGITS_ROWS = 2  # decode router: router rows per program (1 and 4 measured the same, 8 slower)


@dataclass(frozen=True)
class MoEConfig:
    decode: bool
    w1: GemmConfig
    w2: GemmConfig
    # decode only: K warps per program of W1 and W2 on the tensor-core GEMV
    # (kernels/moe_gemv.py); () keeps the tiled kernels
    gemv: tuple = ()
    # decode GEMV only: W1 and W2 in one launch, W2's programs waiting on per-pair counters
    # (kernels/moe_gemv.py, _w1_w2_gemv_kernel); needs equal warps
    one_launch: bool = False
    # one launch only: a register cap for it (more programs per SM), None for none
    gemv_maxnreg: int | None = None
    # batch only: tiles for each expert's last 1..tail.bm rows past a multiple of w1.bm, run
    # as a second pair of GEMMs instead of a w1.bm-row block that is mostly padding
    tail: GemmConfig | None = None
    # batch only: W1 and W2 on a Gluon tile (kernels/ws_moe.py; sm_90 + triton 3.6, bf16 x,
    # every scale byte <= 128): True or "ws" the warp-specialized decoder tile, "rs" the
    # register-operand tile (kernels/rs_gemm_kernel.py); an explicit choice: elsewhere it
    # raises, it never falls back
    ws: bool | str = False

    def __post_init__(self):
        if self.ws not in (False, True, "ws", "rs"):
            raise ValueError(f"MoEConfig.ws must be False, True, 'ws' or 'rs', got {self.ws!r}")
        if self.one_launch and len(self.gemv) == 2 and self.gemv[0] != self.gemv[1]:
            raise ValueError(f"one launch for W1 and W2 needs equal warps, got {self.gemv}")


# Where the default config runs W1 and W2 on a Gluon tile (sm_90 + triton 3.6, batch path):
# rows (fewest tokens, most tokens, "ws" or "rs", W1's weight rows a tile). Measured on an H100
# (gpt-oss-120b's MoE, docs/kernels.md fifth session): "rs" with 128-row W1 tiles (two CTAs an
# SM) beats the Triton kernels by 17 % at T = 4096 and 12 % at 16384. Below 4096 the Triton
# kernels stay: "rs" (64-row tiles) is 3-16 % faster in CUDA graphs at T = 16-1024, but its
# Gluon launches add ~0.6 ms of host time to every eager call (the model's eager prefill ran
# 1.76x slower), and a graph-only pick would load the kernel during capture (forbidden).
GLUON_MOE: tuple = ((4096, 1 << 30, "rs", 128),)
_GLUON_WARNED: list = []  # [True] once the "Gluon tiles not used here" warning was shown


def auto_config(x: torch.Tensor, k: int, experts: int, fused: bool) -> MoEConfig:
    """The config moe_forward runs on x [T, H] when none is given: `default_config`, with
    GLUON_MOE's tile where it applies."""
    return _with_gluon_tile(default_config(x.shape[0], k, experts), x, x.shape[0], fused)


def _with_gluon_tile(cfg: MoEConfig, x: torch.Tensor, tokens: int, fused: bool) -> MoEConfig:
    """The default config with GLUON_MOE's tile for this many tokens where it can run; on a GPU
    or triton version the tiles were not written for, one warning and the Triton kernels
    (other inputs they do not take, float32 x or scale bytes past 128, keep them silently)."""
    pick = next(((t, n) for lo, hi, t, n in GLUON_MOE if lo <= tokens <= hi), None)
    if pick is None or cfg.decode:
        return cfg
    tile, w1_rows = pick
    from .ws_gemm import platform_reason
    from .ws_moe import unsupported_reason
    why = platform_reason(x.device)
    if why:
        if not _GLUON_WARNED and x.device.type == "cuda":
            _GLUON_WARNED.append(True)
            warnings.warn(f"MoE: the Gluon grouped GEMMs are not used because {why}; running "
                          f"the Triton kernels (this warning is shown once)", stacklevel=3)
        return cfg
    if unsupported_reason(x, fused):
        return cfg
    return replace(cfg, ws=tile, w1=replace(cfg.w1, bn=w1_rows))


def default_config(tokens: int, k: int, experts: int) -> MoEConfig:
    """Tile shapes by the number of (token, expert) pairs per expert, from `mxfp4 bench moe
    --sweep` on an H100 (docs/benchmarks/moe-sweep.md).

    Every size runs best with one warpgroup per CTA (4 warps), so that several CTAs share an
    SM and one's decode overlaps another's synchronous MMAs, and 64 weight rows per tile (one
    m64 MMA). Few pairs per expert: weight streaming dominates; 16-token tiles (the smallest
    MMA operand) and K steps of 256. Many pairs: 32-128 tokens per tile.
    """
    if tokens * k <= DECODE_MAX_PAIRS:
        g = GemmConfig(16, 64, 256, 4, 3)
        # W1 / W2 on the tensor-core GEMV with 4 / 4 K warps per 16-row program
        # (benchmarks/moe_decode_probe.py at 3fcbdde, H100, sixth session: T = 1 / 2 / 4 37.1 / 60.3 /
        # 102.6 us; W1 with 2 warps 40.5 / 69.3 / 109.5). Until W1 stopped doing the top-k
        # in its prologue (79 instead of 96 registers), 2 W1 warps were best. Both in one
        # launch (ninth session, interleaved): T = 2 / 4 54.8 / 98.3 against 60.3 / 103.3 us,
        # T = 1 37.0 against 36.9-37.3. At T = 1 (2160 programs, ~2.7 waves of 6 per SM) a
        # 72-register cap (7 per SM, 40 bytes spilled) gives 34.8 against 37.2 us; 64
        # registers 35.8-36.2, 56 36.8; at T = 2 / 4 the caps gain nothing (-1 to +2 %)
        cap = 72 if tokens == 1 else None
        return MoEConfig(True, g, g, gemv=(4, 4), one_launch=True, gemv_maxnreg=cap)
    per_expert = tokens * k / experts
    if per_expert <= 16:
        # up to 16 pairs per expert most experts fit one 16-token block (eighth session:
        # T = 448 / 512, 14 / 16 pairs, 927 / 1102 us against 1124-1138 / 1141-1149 with
        # 32-token blocks; at 20 pairs 32-token blocks win, 1164 against 1247)
        g = GemmConfig(16, 64, 256, 4, 3)
    elif per_expert <= 24:
        g = GemmConfig(32, 64, 128, 4, 3)  # 3 stages 0.4-1.2 % faster than 4 at 14-24 pairs
    elif per_expert <= 48:
        # one 64-row block holds an expert's ~32 +- 6 pairs, so each weight tile is decoded
        # once per expert, not again for a second, nearly empty 32-row block (seventh session,
        # T = 1024: 1409 against 1506-1545 us)
        g = GemmConfig(64, 64, 64, 4, 3)
    else:
        g = GemmConfig(128, 64, 64, 4, 3)
        # tail GEMMs where most experts' counts sit just past a multiple of 128 rows, or at
        # most 64 (eighth session, `benchmarks/moe_tail_probe.py at 3fcbdde`): T = 4096 (128 +- 11 pairs
        # per expert) 2905 against 3169 us with 16-row tails, T = 2048 (64 +- 8) 1952 against
        # 2086 with 64-row ones; at 96, 192 and 512 pairs tails gained nothing or lost
        if per_expert <= 80:
            return MoEConfig(False, g, g, tail=GemmConfig(64, 64, 64, 4, 3))
        if 112 <= per_expert <= 144:
            return MoEConfig(False, g, g, tail=GemmConfig(16, 64, 256, 4, 3))
    return MoEConfig(False, g, g)


def _fit(tile: int, size: int) -> int:
    """The largest of tile, tile/2, ... that divides size (a multiple of 64), at least 64."""
    while tile > 64 and size % tile:
        tile //= 2
    return max(tile, 64)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check_fits(x, w1_codes, w1_scales, b1, w2_codes, w2_scales, router_w):
    E, H = router_w.shape
    I = b1.shape[-1] // 2
    kp1, np1, kp2, np2 = _pad64(H), _pad64(2 * I), _pad64(I), _pad64(H)
    if (x.shape[-1] != H or w1_codes.shape != (E, np1, kp1 // 2) or w2_codes.shape != (E, np2, kp2 // 2)
            or w1_scales.shape != (E, kp1 // 32, np1) or w2_scales.shape != (E, kp2 // 32, np2)):
        raise ValueError(f"inconsistent MoE shapes (weights in the packed expert layout): x "
                         f"{tuple(x.shape)}, router {tuple(router_w.shape)}, b1 {tuple(b1.shape)}, "
                         f"w1 codes/scales {tuple(w1_codes.shape)}/{tuple(w1_scales.shape)}, "
                         f"w2 codes/scales {tuple(w2_codes.shape)}/{tuple(w2_scales.shape)}")
    return E, H, I


def _pad64(n: int) -> int:
    return -(-n // 64) * 64


def moe_forward(x: torch.Tensor, router_w, router_b, w1_codes, w1_scales, b1, w2_codes, w2_scales,
                b2, k: int, alpha: float = 1.702, limit: float = 7.0, fused: bool = True,
                config: MoEConfig | None = None) -> torch.Tensor:
    """GPT-OSS MoE on x [T, H]: returns [T, H] in x's dtype. Expert weights in the packed
    layout of `mxfp4.nn.MoE` (mxfp4.layouts.pack with rows padded to 64).

    fused: every scale byte of both weights is <= 128 (checked once by the module), so the
    decode applies code and scale in one multiply.
    """
    E, H, I = _check_fits(x, w1_codes, w1_scales, b1, w2_codes, w2_scales, router_w)
    T = x.shape[0]
    dev = x.device
    out = torch.empty(T, H, dtype=x.dtype, device=dev)
    if T == 0:
        return out
    if x.stride(-1) != 1:
        x = x.contiguous()
    cfg = config or auto_config(x, k, E, fused)
    P = T * k
    k_pad, e_pad = pad_pow2(k), pad_pow2(E, 16)
    interp = _interpreting()
    pdl = launch_options(dev)  # every kernel below waits for its predecessor in-kernel
    ids = torch.empty(P, dtype=torch.int32, device=dev)
    wts = torch.empty(P, dtype=torch.float32, device=dev)
    a = torch.empty(P, I, dtype=torch.bfloat16, device=dev)
    y = torch.empty(P, H, dtype=torch.bfloat16, device=dev)
    g1, g2 = cfg.w1, cfg.w2
    if cfg.decode:  # one row block per pair; no grouping
        nb = P
        logits = torch.empty(T, e_pad, dtype=torch.float32, device=dev)
        be, bk = LOGITS_ROWS, min(pad_pow2(H), 4096)  # a whole router row per load: one round trip
        counters = arrival_counters(dev)  # T for the router, then P for the one-launch GEMVs
        done = counters[T:T + P]
        _logits_kernel[(T, triton.cdiv(E, be))](x, router_w, router_b, logits, ids, wts,
                                                counters, H, E, x.stride(0),
                                                router_w.stride(0), K=k, K_PAD=k_pad,
                                                E_PAD=e_pad, BE=be, BK=bk, INTERPRET=interp,
                                                num_warps=LOGITS_WARPS, **pdl)
        tables = (ids, ids, ids, ids)  # unused placeholders
    else:
        if g1.bm != g2.bm:
            raise ValueError("the batch path shares one block table: w1 and w2 need the same bm")
        nb = num_blocks_max(P, E, g1.bm)
        counts = torch.zeros(e_pad, dtype=torch.int32, device=dev)
        rank = torch.empty(P, dtype=torch.int32, device=dev)
        tables = tuple(torch.empty(n, dtype=torch.int32, device=dev) for n in (P, nb, nb, nb))
        if cfg.tail and cfg.tail.bm >= g1.bm:
            raise ValueError(f"tail blocks ({cfg.tail.bm} rows) must be smaller than the main "
                             f"ones ({g1.bm})")
        # per-expert tail table (expert, first row, rows) sharing the sorted pair list
        tails = tables[:1] + tuple(torch.empty(e_pad, dtype=torch.int32, device=dev)
                                   for _ in range(3)) if cfg.tail else tables
        # router GEMM tiles: enough programs (token tiles x expert tiles x K splits) that the
        # router weight streams from many SMs; few tokens split K more
        bt, be = (16, 32) if T <= 256 else (64, 64)
        be = min(be, e_pad)
        tiles = triton.cdiv(T, bt) * (e_pad // be)
        split = max(1, min(8, 128 // tiles, triton.cdiv(H, 256)))
        k_chunk = triton.cdiv(triton.cdiv(H, split), 64) * 64
        split = triton.cdiv(H, k_chunk)
        part = torch.empty(split, T, e_pad, dtype=torch.float32, device=dev)
        _logits_part_kernel[(triton.cdiv(T, bt), e_pad // be, split)](
            x, router_w, part, T, H, E, x.stride(0), router_w.stride(0), k_chunk, E_PAD=e_pad,
            BT=bt, BE=be, BK=64, INTERPRET=interp, num_warps=4, **pdl)
        rt = 16
        _route_kernel[(triton.cdiv(T, rt),)](part, router_b, ids, wts, rank, counts, T, E, K=k,
                                             K_PAD=k_pad, E_PAD=e_pad, SPLIT=split, BT=rt,
                                             num_warps=4, **pdl)
        chunk = 64  # the [chunk, E] selection matrices stay in registers
        _align_kernel[(triton.cdiv(max(P, nb), chunk),)](
            ids, rank, counts, *tables, *tails[1:], P, nb, E, E_PAD=e_pad, BM=g1.bm,
            CHUNK=chunk, TAIL=cfg.tail.bm if cfg.tail else 0, num_warps=4, **pdl)
    if any(g.bk % 64 for g in (g1, g2, cfg.tail) if g):
        raise ValueError(f"bk must be a multiple of 64, got {g1.bk} and {g2.bk}"
                         + (f" ({cfg.tail.bk} in the tail)" if cfg.tail else ""))
    if cfg.decode and cfg.gemv and moe_gemv.usable(x, I, fused):
        moe_gemv.launch(x, w1_codes, w1_scales, b1, a, ids, wts, w2_codes, w2_scales, b2,
                        y, k, alpha, limit, interp, pdl, *cfg.gemv,
                        done=done if cfg.one_launch else None, maxnreg=cfg.gemv_maxnreg)
    else:
        parts = [(g1, g2, tables, nb)]
        if cfg.tail and not cfg.decode:
            parts.append((cfg.tail, cfg.tail, tails, e_pad))
        _tiled_gemms(x, w1_codes, w1_scales, b1, a, parts, ids, wts, w2_codes,
                     w2_scales, b2, y, H, I, k, alpha, limit, cfg.decode, fused, interp, pdl,
                     ws=False if cfg.decode else cfg.ws)  # not `and`: it kept "rs" as True
    bh = 1024
    one_launch = cfg.decode and cfg.one_launch
    _combine_kernel[(T, triton.cdiv(H, bh))](y, out, done if one_launch else y, H, out.stride(0),
                                             K=k, BH=bh, RESET=one_launch, INTERPRET=interp,
                                             num_warps=4, **pdl)
    return out


def _tile(ws: bool | str) -> str:
    """MoEConfig.ws -> the Gluon tile's name ("ws" or "rs")."""
    return "ws" if ws is True else ws


def _tiled_gemms(x, w1_codes, w1_scales, b1, a, parts, ids, wts, w2_codes, w2_scales,
                 b2, y, H, I, k, alpha, limit, decode, fused, interp, pdl, ws: bool | str = False):
    """W1 and W2 on the tiled tensor-core kernels (kernels/moe_gemm.py), either path; parts:
    (W1 tiles, W2 tiles, block tables, blocks) for the main blocks and any tail blocks.
    ws: both on a Gluon tile instead (batch path; MoEConfig.ws)."""
    np1, np2 = w1_codes.shape[1], w2_codes.shape[1]
    kp1, kp2 = w1_codes.shape[2] * 2, w2_codes.shape[2] * 2
    if ws:
        from .ws_moe import gather_rows, ws_w1, ws_w2
        xs = gather_rows(x, parts[0][2][0], k)
    for g1, _, tables, nb in parts:
        bn1 = _fit(g1.bn, np1)
        if ws:
            ws_w1(xs, w1_codes, w1_scales, b1, a, tables, nb, g1.bm, alpha, limit, fused,
                  tile=_tile(ws), bn=bn1)
            continue
        _w1_kernel[(nb * (np1 // bn1),)](
            x, w1_codes, w1_scales, b1, a, *tables, ids,
            H, kp1, 2 * I, np1, nb, x.stride(0), alpha, limit, K=k, DECODE=decode, BM=g1.bm,
            BN=bn1, BK=g1.bk, GROUP_M=g1.group_m, FUSED=fused, X_SPLIT=x.dtype != torch.bfloat16,
            RAGGED_K=H % 64 != 0, INTERPRET=interp, **g1.launch(), **pdl)
    for _, g2, tables, nb in parts:
        bn2 = _fit(g2.bn, np2)
        if ws:
            ws_w2(a, w2_codes, w2_scales, b2, wts, y, tables, nb, g2.bm, fused, tile=_tile(ws),
                  bn=bn2)
            continue
        _w2_kernel[(nb * (np2 // bn2),)](
            a, w2_codes, w2_scales, b2, ids, wts, y, *tables, I, kp2, H, np2, nb, DECODE=decode,
            BM=g2.bm, BN=bn2, BK=g2.bk, GROUP_M=g2.group_m, FUSED=fused, RAGGED_K=I % 64 != 0,
            INTERPRET=interp, **g2.launch(), **pdl)
