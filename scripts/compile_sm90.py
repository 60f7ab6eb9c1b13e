"""Compile the project's Triton and Gluon kernels for an H100 (sm_90a) on a machine with no GPU,
and print each one's registers, spills, shared memory and instruction counts.

Usage (the device's toolchain, triton 3.6.0 + torch 2.11, in a git-ignored venv):
    bash -c 'python3 -m venv .venv-t36 && .venv-t36/bin/pip install triton==3.6.0 numpy pytest \
        && bash scripts/torch-cpu.sh .venv-t36/bin/python 2.11.0'   # once; git-ignore .venv-t36
    PYTHONPATH=src .venv-t36/bin/python scripts/compile_sm90.py --list
    PYTHONPATH=src .venv-t36/bin/python scripts/compile_sm90.py [NAME ...] [--sass] [--dump DIR]
        [--json FILE]
    PYTHONPATH=src .venv-t36/bin/python scripts/compile_sm90.py \
        --kernel mxfp4.kernels.unpack:SOME_KERNEL --sig 'x=*bf16,n=i32,B=constexpr' \
        --const B=64 --opt num_warps=4

How: a stand-in for triton's active driver reports target GPUTarget("cuda", 90, 32), so a
kernel's `warmup(*args, grid=...)` runs the same argument specialization as a launch (CPU torch
tensors stand in for CUDA ones; their data pointers are 16-byte aligned) and compiles through
TTIR, TTGIR, LLVM IR and PTX to a cubin with the ptxas that triton bundles; nothing is
launched. The resource numbers come from running that ptxas again with -v on the same PTX;
NAME entries are REGISTRY below (each builds its kernel's arguments as its launcher does).
Each PTX is also checked for writes to an in-flight wgmma's A registers (scripts/ptx_hazards.py;
"A hazards"). Undefined in PTX; yet Triton 3.6's own v1 kernel (linear_v1_m256) shows 8, its
SASS rewrites those registers with no wait, and it has always passed its GPU checks: the
hardware may read A when the wgmma issues. The Gluon kernels keep zero anyway.

Found with triton 3.6.0 (bundled ptxas 12.8) on x86_64 without a GPU: Triton and Gluon kernels
compile to PTX and cubin for sm_90a, Gluon's warp_specialize, mbarriers, TMA descriptors (host
TensorDescriptor over CPU tensors), async wgmma, fp4_to_fp and inline PTX included; SASS comes
from the bundled cuobjdump/nvdisasm. Gluon kernels do not run under TRITON_INTERPRET (no
driver), so offline checks stop at compiling. ptxas compiles every warp-specialized partition
under the kernel's .maxnreg (a 128-register wgmma accumulator fails at maxnreg 128): the
setmaxnreg that triton inserts moves registers at run time but raises no partition's budget.
Its setmaxnreg values share maxnreg x warps among the partitions (8 warps at 128: consumer
160 + decoder 96 in the warp-specialized region), so two 8-warp CTAs at 128 fit an SM.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from ptx_hazards import wgmma_a_hazards
from triton.backends.compiler import GPUTarget
from triton.runtime.driver import driver

TARGET = GPUTarget("cuda", 90, 32)  # capability 90 compiles for sm_90a (wgmma, setmaxnreg)
DEVICE_TRITON = "3.6.0"  # the H100 machines' triton (torch 2.11)


class OfflineDriver:
    """Just enough of triton's driver for compiling: a fixed target, device 0, no streams."""

    def __init__(self, target: GPUTarget):
        self.target = target

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        return torch.device("cpu")


def install_driver(target: GPUTarget = TARGET) -> None:
    driver.set_active(OfflineDriver(target))


# ---- the registry: each entry returns (jit function, positional args, keyword args) --------

def _dense_gemv():
    from mxfp4.kernels.dense_gemv import _dense_gemv_kernel
    m, n, k, bn, bk = 16, 14336, 4096, 64, 128
    x, w = torch.empty(m, k, dtype=torch.bfloat16), torch.empty(n, k, dtype=torch.bfloat16)
    out = torch.empty(m, n, dtype=torch.bfloat16)
    return _dense_gemv_kernel, (x, w, out, out, out, out, out, m, n, k // 8, k, n, k), dict(
        HAS_BIAS=False, HAS_RES=False, SPLIT_K=1, DOT=True, EARLY_W=False, BN=bn, BM=16,
        BK=bk, num_warps=4, num_stages=3, launch_pdl=True)


def _linear_v1(m: int, hopper: bool):
    """kernels/linear.py's tensor-core kernel with the config pick_config gives 4096 -> 14336."""
    from mxfp4.kernels.linear import _linear_kernel, pick_config
    n, k = 14336, 4096
    cfg = pick_config(m, n, k, 132, hopper)
    split = cfg.pop("SPLIT_K")
    x = torch.empty(m, k, dtype=torch.bfloat16)
    codes = torch.empty(n, k // 2, dtype=torch.uint8)
    scales = torch.empty(k // 32, n, dtype=torch.uint8) if hopper else \
        torch.empty(n, k // 32, dtype=torch.uint8)
    out = torch.empty(m, n, dtype=torch.bfloat16)
    k_chunk = -(-k // split)
    args = (x, codes, scales, out, out, out, out, m, n, k, k, n, k, n, k_chunk, m * n)
    return _linear_kernel, args, dict(
        HOPPER=hopper, FUSED=hopper, HAS_BIAS=False, X_SPLIT=False, BS=32, SB=32,
        MASK_K=False, RAGGED_K=False, SPLIT_K=split, EARLY_RELEASE=cfg["num_warps"] >= 8,
        launch_pdl=True, **cfg)


def _ws_gemm(m: int, n: int = 14336, k: int = 4096, **overrides):
    from mxfp4.kernels import ws_gemm
    return ws_gemm.compile_args(m, n, k, **overrides)


def _ws_decode(packed: bool = False):
    from mxfp4.kernels import ws_gemm
    n, k = 2944, 2944  # packed: HopperWeight's padded rows and K
    out = torch.empty(n, k, dtype=torch.bfloat16)
    if packed:
        from mxfp4.kernels.ws_decode import ws_decode_packed_kernel
        args = (torch.empty(n, k // 2, dtype=torch.uint8),
                torch.empty(k // 32, n, dtype=torch.uint8), out, n, k)
        return ws_decode_packed_kernel, args, dict(BN=ws_gemm.BN, BK=ws_gemm.BK, FUSED=True,
                                                   num_warps=4)
    kernel, args, _ = ws_gemm.decode_args(torch.empty(n, k // 2, dtype=torch.uint8),
                                          torch.empty(n, k // 32, dtype=torch.uint8), out)
    return kernel, args, dict(BN=ws_gemm.BN, BK=ws_gemm.BK, num_warps=4)


def _ws_moe(which: str, bm: int, tile: str = "ws", bn: int = 64, **overrides):
    """W1 or W2 of gpt-oss-120b (E = 128, H = I = 2880) for row blocks of bm pairs at
    T = 1024, on the warp-specialized (tile "ws") or the register-operand ("rs") tile of bn
    weight rows."""
    from mxfp4.kernels import ws_moe
    from mxfp4.kernels.ws_moe_kernel import ws_moe_w1_kernel, ws_moe_w2_kernel
    e, h, i, pairs, nb = 128, 2880, 2880, 4096, 192
    n, k = (2 * i, h) if which == "w1" else (h, i)
    rows = torch.empty(pairs, k, dtype=torch.bfloat16)
    codes = torch.empty(e, n, k // 2, dtype=torch.uint8)
    scales = torch.empty(e, k // 32, n, dtype=torch.uint8)
    descs = ws_moe._descriptors(rows, codes, bm, scales if tile == "rs" else None, bn)
    cfg = dict(ws_moe.rs_tile_config(bm, bn) if tile == "rs" else ws_moe.tile_config(bm),
               **overrides)
    for key in ("BN", "BM", "SPLIT_K"):
        cfg.pop(key, None)
    kwargs = ws_moe._rs_keys(dict(FUSED=True, RS=tile == "rs", **cfg))
    if which == "w1":
        tables = [torch.empty(nb, dtype=torch.int32) for _ in range(3)]
        args = (*descs, scales, torch.empty(e, n), torch.empty(pairs, n // 2, dtype=torch.bfloat16),
                *tables, n, k, n, k // 32, nb, 1.702, 7.0)
        return ws_moe_w1_kernel, args, kwargs
    tables = [torch.empty(m, dtype=torch.int32) for m in (pairs, nb, nb, nb)]
    b2, wts, y = torch.empty(e, n), torch.empty(pairs), torch.empty(pairs, n, dtype=torch.bfloat16)
    args = (*descs, scales, b2, wts, y, *tables, n, k, n, k // 32, nb)
    return ws_moe_w2_kernel, args, kwargs


def _rs_gemm(m: int, n: int = 14336, k: int = 4096, **overrides):
    from mxfp4.kernels import rs_gemm
    return rs_gemm.compile_args(m, n, k, **overrides)


REGISTRY = {
    # the register-operand GEMM (kernels/rs_gemm.py), config overrides as for ws_gemm
    "rs_gemm_m16": lambda **o: _rs_gemm(16, **o),
    "rs_gemm_m64": lambda **o: _rs_gemm(64, **o),
    "rs_gemm_m256": lambda **o: _rs_gemm(256, **o),
    "rs_gemm_m4096": lambda **o: _rs_gemm(4096, **o),
    "ws_moe_w1_m64": lambda **o: _ws_moe("w1", 64, **o),
    "ws_moe_w1_m16": lambda **o: _ws_moe("w1", 16, **o),
    "ws_moe_w2_m64": lambda **o: _ws_moe("w2", 64, **o),
    "ws_moe_w2_m16": lambda **o: _ws_moe("w2", 16, **o),
    "ws_moe_w2_m128": lambda **o: _ws_moe("w2", 128, **o),
    "rs_moe_w1_m16": lambda **o: _ws_moe("w1", 16, "rs", **o),
    "rs_moe_w1_m64": lambda **o: _ws_moe("w1", 64, "rs", **o),
    "rs_moe_w2_m64": lambda **o: _ws_moe("w2", 64, "rs", **o),
    "rs_moe_w2_m128": lambda **o: _ws_moe("w2", 128, "rs", **o),
    "rs_moe_w1_m128_bn128": lambda **o: _ws_moe("w1", 128, "rs", 128, **o),
    "rs_moe_w1_m64_bn128": lambda **o: _ws_moe("w1", 64, "rs", 128, **o),
    "dense_gemv": _dense_gemv,
    "linear_v1_m256": lambda: _linear_v1(256, hopper=True),
    "linear_v1_plain_m256": lambda: _linear_v1(256, hopper=False),
    "ws_decode": _ws_decode,
    "ws_decode_packed": lambda: _ws_decode(packed=True),
    # ws_gemm entries take config overrides: ws_gemm_m16:maxnreg=80,STAGES=6
    "ws_gemm_m16": lambda **o: _ws_gemm(16, **o),
    "ws_gemm_m64": lambda **o: _ws_gemm(64, **o),
    "ws_gemm_m256": lambda **o: _ws_gemm(256, **o),
    "ws_gemm_m4096": lambda **o: _ws_gemm(4096, **o),
    "ws_gemm_m16_splitk": lambda **o: _ws_gemm(16, 2880, 2880, **o),  # 23 tiles: split 4
    # benchmarks/ws_gemm_device.py's sweep variants (fused: no loader warp; 2wg: two consumer
    # warpgroups; dec8: 8 decoder warps; 2cta: 8 warps at 128 registers, two CTAs an SM)
    "ws_gemm_m16_fused_dec8": lambda **o: _ws_gemm(16, LOADER=False, DECODE_WARPS=8, **o),
    "ws_gemm_m16_dec8": lambda **o: _ws_gemm(16, DECODE_WARPS=8, maxnreg=128, **o),
    "ws_gemm_m16_fused_2cta": lambda **o: _ws_gemm(16, LOADER=False, maxnreg=128, STAGES=4,
                                                   **o),
    "ws_gemm_m256_2wg_dec8": lambda **o: _ws_gemm(256, num_warps=8, DECODE_WARPS=8,
                                                  LOADER=False, maxnreg=128, **o),
    "ws_gemm_m256_fused_dec8": lambda **o: _ws_gemm(256, LOADER=False, DECODE_WARPS=8, **o),
    "ws_gemm_m256_2wg_256": lambda **o: _ws_gemm(256, BM=256, num_warps=8, LOADER=False, **o),
    "ws_gemm_m4096_stages3": lambda **o: _ws_gemm(4096, STAGES=3, **o),
    "ws_gemm_m4096_old_64x256": lambda **o: _ws_gemm(4096, BN=64, STAGES=3, num_warps=4,
                                                     LOADER=True, **o),
    "ws_gemm_m4096_2wg_dec8": lambda **o: _ws_gemm(4096, BM=128, num_warps=8, DECODE_WARPS=8,
                                                   maxnreg=128, **o),
}


# ---- compiling and reading the results --------------------------------------------------

def compile_entry(entry: str):
    """NAME or NAME:key=value,... (keyword overrides for entries that take them)."""
    name, _, spec = entry.partition(":")
    overrides = {k: _literal(v) for k, v in (p.split("=") for p in spec.split(",") if p)}
    fn, args, kwargs = REGISTRY[name](**overrides)
    return fn.warmup(*args, grid=(1,), **kwargs)


def compile_spec(kernel: str, sig: str, consts: str, opts: str):
    """Compile module:function from a written signature: 'a=*bf16,n=i32,B=constexpr'; pointers
    and ints named in --sig as 'n=i32:16' are marked 16-divisible (a launch does that for
    16-byte aligned tensors and multiples of 16)."""
    from triton.compiler import ASTSource
    module, _, name = kernel.partition(":")
    fn = getattr(importlib.import_module(module), name)
    signature, attrs, constexprs = {}, {}, {}
    for i, item in enumerate(p for p in sig.split(",") if p):
        arg, ty = item.split("=")
        div = ty.startswith("*") or ty.endswith(":16")
        signature[arg] = ty.removesuffix(":16")
        if div and ty != "constexpr":
            attrs[(i,)] = [["tt.divisibility", 16]]
    for item in (p for p in consts.split(",") if p):
        arg, value = item.split("=")
        constexprs[arg] = _literal(value)
    options = {k: _literal(v) for k, v in (p.split("=") for p in opts.split(",") if p)}
    src_cls = ASTSource
    if getattr(fn, "is_gluon", lambda: False)():
        from triton.experimental.gluon._runtime import GluonASTSource
        src_cls = GluonASTSource
    return triton.compile(src_cls(fn, signature, constexprs, attrs), target=TARGET,
                          options=options)


def _literal(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def ptxas_report(ptx: str) -> dict:
    """Registers, spills, stack and shared memory from the bundled ptxas -v on this PTX."""
    from triton.backends.nvidia.compiler import get_ptxas
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        run = subprocess.run([get_ptxas(TARGET.arch).path, "-lineinfo", "-v",
                              f"--gpu-name=sm_{TARGET.arch}a", path, "-o", path + ".o"],
                             capture_output=True, text=True)
    log = run.stdout + run.stderr
    if run.returncode:
        raise RuntimeError(f"ptxas failed:\n{log}")

    def num(pattern):
        hit = re.search(pattern, log)
        return int(hit.group(1)) if hit else 0
    return dict(regs=num(r"Used (\d+) registers"), spill_stores=num(r"(\d+) bytes spill stores"),
                spill_loads=num(r"(\d+) bytes spill loads"),
                stack=num(r"(\d+) bytes stack frame"), ptxas_smem=num(r"(\d+) bytes smem"),
                warnings=[line for line in log.splitlines() if "warning" in line.lower()])


def summarize(kernel, sass: bool = False) -> dict:
    ptx = kernel.asm["ptx"]
    md = kernel.metadata
    row = dict(name=md.name, num_warps=md.num_warps, shared=md.shared, **ptxas_report(ptx))
    regs = re.findall(r"setmaxnreg\.\w+\.sync\.aligned\.u32\s+(\d+)", ptx)
    row["setmaxnreg"] = sorted({int(v) for v in regs})
    row["wgmma"] = ptx.count("wgmma.mma_async")
    row["tma_loads"] = ptx.count("cp.async.bulk.tensor")
    row["mbarrier_waits"] = len(re.findall(r"mbarrier\.try_wait", ptx))
    row["local_ld_st"] = len(re.findall(r"\b(?:ld|st)\.local", ptx))
    row["a_hazards"] = wgmma_a_hazards(ptx)
    if sass:
        text = kernel.asm["sass"]
        row["sass_hgmma"] = len(re.findall(r"\bHGMMA\b", text))
        row["sass_hmma"] = len(re.findall(r"\bHMMA\b", text))
        row["sass_ldl_stl"] = len(re.findall(r"\b(?:LDL|STL)\b", text))
    return row


def dump(kernel, folder: str, label: str) -> None:
    os.makedirs(folder, exist_ok=True)
    for ext in ("ttgir", "ptx", "sass"):
        text = kernel.asm[ext]
        with open(os.path.join(folder, f"{label}.{ext}"), "w") as f:
            f.write(text if isinstance(text, str) else text.decode())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="registry entries, NAME[:key=value,...] "
                    "(default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--sass", action="store_true", help="also count SASS HGMMA/HMMA/LDL/STL")
    ap.add_argument("--dump", help="write each kernel's TTGIR, PTX and SASS here")
    ap.add_argument("--json", help="write the table as JSON here")
    ap.add_argument("--kernel", help="module:function, compiled from --sig/--const/--opt")
    ap.add_argument("--sig", default="")
    ap.add_argument("--const", default="")
    ap.add_argument("--opt", default="num_warps=4")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(REGISTRY))
        return 0
    if triton.__version__ != DEVICE_TRITON:
        print(f"warning: triton {triton.__version__} here, the device has {DEVICE_TRITON}",
              file=sys.stderr)
    unknown = [n for n in a.names if n.partition(":")[0] not in REGISTRY]
    if unknown:
        raise SystemExit(f"unknown kernels {unknown}; --list shows {list(REGISTRY)}")
    install_driver()
    jobs = [(a.kernel, lambda: compile_spec(a.kernel, a.sig, a.const, a.opt))] if a.kernel \
        else [(n, lambda n=n: compile_entry(n)) for n in (a.names or REGISTRY)]
    rows, failed = [], 0
    for label, build in jobs:
        try:
            kernel = build()
        except Exception as e:  # report every kernel, then fail
            failed += 1
            print(f"{label}: FAILED {type(e).__name__}: {str(e)[:2000]}")
            continue
        row = dict(label=label, **summarize(kernel, a.sass))
        rows.append(row)
        if a.dump:
            dump(kernel, a.dump, label.replace(":", "_"))
        print(f"{label}: warps {row['num_warps']} regs {row['regs']} "
              f"setmaxnreg {row['setmaxnreg'] or '-'} spills {row['spill_stores']}/"
              f"{row['spill_loads']} B stack {row['stack']} smem {row['shared']} B "
              f"wgmma {row['wgmma']} tma {row['tma_loads']} mbar-waits {row['mbarrier_waits']} "
              f"A hazards {len(row['a_hazards'])}"
              + (f" HGMMA {row['sass_hgmma']} HMMA {row['sass_hmma']} LDL/STL "
                 f"{row['sass_ldl_stl']}" if a.sass else "")
              + "".join(f"\n    {w}" for w in row["warnings"] + row["a_hazards"][:4]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(triton=triton.__version__, torch=torch.__version__,
                           target=f"sm_{TARGET.arch}a", kernels=rows), f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
