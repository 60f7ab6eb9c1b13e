# Issue 24 item 4 on one H100 (under 4 minutes): `mxfp4 bench moe` at the default T list, with
# OpenAI triton_kernels importable, so that its column is timed in the same run as ours and the
# bf16 torch baseline, every column checked against the fp32 reference first.
# vendor_tk/ (git-ignored, carried along) holds python/triton_kernels of triton-lang/triton at
# commit 4b184cccbb42 (vendor_tk/COMMIT names it; the bench records it). From the repository root:
#   bash benchmarks/moe_tk_device.sh        results: $OUT/bench/moe.{json,md}, $OUT/moe.log
export PYTHONPATH=src:vendor_tk PYTHONUNBUFFERED=1
: "${OUT:?set OUT to the results folder}"
mkdir -p "$OUT/bench"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
if [ ! -f vendor_tk/triton_kernels/matmul_ogs.py ]; then
  echo "vendor_tk/triton_kernels is missing: run with carry=[\"vendor_tk\"]" >&2; exit 2
fi
python -c "import torch, triton, triton_kernels; print('torch', torch.__version__, 'triton', triton.__version__,
'triton_kernels', triton_kernels.__file__, open('vendor_tk/COMMIT').read().strip())"
timeout -k 10 225 python -m mxfp4 bench moe --out "$OUT/bench" > "$OUT/moe.log" 2>&1
echo "bench moe rc $?"; grep -E "'path'|not importable" "$OUT/moe.log" | tail -9; tail -4 "$OUT/moe.log"
cat "$OUT/bench/moe.md" 2>/dev/null
