# One-off (issue 24's last device call, in order of need): the final tree's GPU test files, the
# whole-model decode rows with the Gluon tables on and off, `mxfp4 bench moe` with
# triton_kernels in the same run (carry vendor_tk), the MoE rs tile with 128-row W1 tiles.
#   bash benchmarks/probe_issue24_final.sh     (logs in $OUT)
export PYTHONPATH=src PYTHONUNBUFFERED=1
: "${OUT:?set OUT to the results folder}"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log -1 --format='tree %H' 2>/dev/null
timeout -k 5 100 python3 -m pytest -q -p no:cacheprovider tests/test_ws_moe.py \
    tests/test_rs_gemm.py tests/test_ops_ws_backend.py tests/test_ws_gemm.py \
    tests/test_ws_decode_asm.py tests/test_moe_kernels.py tests/test_kernels_linear.py \
    > "$OUT/tests.log" 2>&1
echo "tests rc $?"; grep -E "passed|failed" "$OUT/tests.log" | tail -3
args="bench model --shape gpt-oss-120b --batches 64,256 --steps 16 --attention bf16
      --no-transformers --prompt 256 --prefill-batches 1"
timeout -k 5 120 python3 -m mxfp4 $args --out "$OUT/on" > "$OUT/on.log" 2>&1
echo "on rc $?"; tail -5 "$OUT/on.log"
timeout -k 5 120 python3 benchmarks/probe_tables_off.py $args --out "$OUT/off" > "$OUT/off.log" 2>&1
echo "off rc $?"; tail -5 "$OUT/off.log"
PYTHONPATH=src:vendor_tk timeout -k 5 170 python3 -m mxfp4 bench moe --no-bf16 \
    --out "$OUT/bench" > "$OUT/tk.log" 2>&1
echo "bench moe rc $?"; tail -2 "$OUT/tk.log"; cat "$OUT/bench/moe.md"
timeout -k 5 90 python3 benchmarks/probe_moe_rs_bm.py 4096,16384 > "$OUT/bm.log" 2>&1
echo "probe rc $?"; tail -3 "$OUT/bm.log"
