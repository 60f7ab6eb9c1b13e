# Issue 24 on one H100, one device command (under 10 minutes): check and time both Gluon GEMMs
# (ws: warp-specialized decoder, rs: register operand) against cuBLAS and v1, run the GPU test
# files (with the MoE and linear tests that reach the dispatch tables), then the MoE layer on the
# rs tile (TILES=ws,rs for both) against v1. Full logs in $OUT; a short table last.
#   bash benchmarks/kernels_v2_device.sh     (a first look: 2 shapes, M = 16, 64, 256, 4096)
#   SHAPES=0,1,2,3 ONLY=... bash benchmarks/kernels_v2_device.sh   (every shape; sweep labels)
export PYTHONPATH=src PYTHONUNBUFFERED=1
: "${OUT:?set OUT to the results folder}"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log -1 --format='tree %H' 2>/dev/null  # the device copy's HEAD may be stale: the note says
timeout -k 10 280 python3 benchmarks/ws_gemm_device.py --fast --shapes "${SHAPES:-0,2}" \
    --ms "${MS:-16,64,256,4096}" --only "${ONLY:-d4,d4x2,256x128,rs_nl,rs_2wg,rs_2wg_nl,rs_4wg}" \
    > "$OUT/gemm.log" 2>&1
echo "gemm rc $?"
timeout -k 10 120 python3 -m pytest -q -p no:cacheprovider tests/test_ws_gemm.py \
    tests/test_rs_gemm.py tests/test_ops_ws_backend.py tests/test_ws_moe.py \
    tests/test_ws_decode_asm.py tests/test_moe_kernels.py tests/test_kernels_linear.py \
    > "$OUT/tests.log" 2>&1
echo "tests rc $?"
timeout -k 10 150 python3 benchmarks/ws_moe_device.py --ts "${TS:-16,64,256,1024,4096}" \
    --tiles "${TILES:-rs}" > "$OUT/moe.log" 2>&1
echo "moe rc $?"
grep -E "FAIL|differ from|hangs" "$OUT/gemm.log" | head -20
grep -A30 "best/cuBLAS" "$OUT/gemm.log" | head -30
grep -E "passed|failed" "$OUT/tests.log" | tail -3
tail -6 "$OUT/moe.log"
