#!/usr/bin/env bash
# One device call for the decode GEMV (docs/kernels.md, "Decode GEMV"): GPU tests of the touched
# kernels, then `mxfp4 bench kernels` / `mxfp4 bench moe` with both decode paths; logs to $OUT.
# usage: bash scripts/device_gemv.sh [MS...]   (env: TOKENS, SWEEP=--sweep, BF16=--no-bf16)
set -u
export PYTHONPATH=src
OUT=${OUT:-/tmp/out}
MS=${*:-1 2 4 8 16 64}
TOKENS=${TOKENS:-1 2 4 16}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv > "$OUT/smi.txt" 2>&1
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee "$OUT/versions.txt"
timeout 240 python3 -m pytest -q -x -n 8 tests/test_kernels_gemv.py tests/test_kernels_linear.py \
    tests/test_moe_kernels.py tests/test_ops_dispatch.py > "$OUT/tests.log" 2>&1
echo "tests rc=$?: $(tail -1 "$OUT/tests.log")"
mkdir -p "$OUT/k" "$OUT/m"
timeout ${KTIME:-300} python3 -m mxfp4.cli bench kernels --parts linear --m $MS ${SWEEP:-} --jobs 14 \
    --out "$OUT/k" > "$OUT/kernels.log" 2>&1
echo "kernels rc=$?"
[ -n "${SKIP_MOE:-}" ] || timeout ${MTIME:-200} python3 -m mxfp4.cli bench moe --tokens $TOKENS ${SWEEP:-} ${BF16:-} --out "$OUT/m" \
    > "$OUT/moe.log" 2>&1
echo "moe rc=$?"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
try:
    rows = json.load(open(os.path.join(out, "k", "kernels.json")))["rows"]
except Exception as e:
    rows = []; print("no kernels.json", e)
for r in rows:
    if r["variant"] != "mxtensor":
        print(f"{r['shape']:>12} M={r['M']:<3} {r['variant']:<12} {r['us']:7.1f} us  floor {r['floor_us']:5.1f}  {r['config'][:90]}")
for name in ("moe-sweep", "moe"):
    try:
        for r in json.load(open(os.path.join(out, "m", name + ".json")))["rows"]:
            print(name, r.get("T"), f"{r.get('us', float('nan')):7.1f}", r.get("config"), r.get("error", "")[:80])
    except Exception as e:
        print("no", name, e)
PY
