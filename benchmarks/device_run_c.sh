# Issue 22 device batch c: GPU tests, 120b batch-1 decode after the one-launch attention, then
# 20b (all rows) against transformers. Results under $OUT.
mkdir -p $OUT/b120 $OUT/b20; export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 100 python -m pytest -q -p no:cacheprovider tests/test_gpt_oss_decode.py tests/test_kernels_decode_ops.py \
  tests/test_kernels_dense_gemv.py tests/test_nn_linear_layout.py > $OUT/pytest.log 2>&1
echo "pytest rc $?"; grep -E "passed|failed" $OUT/pytest.log | tail -2; grep FAILED $OUT/pytest.log | head
timeout 150 python -m mxfp4 bench model --shape gpt-oss-120b --batches 1,8 --prefill-batches 1 --steps 64 --out $OUT/b120 > $OUT/bench120.log 2>&1
echo "bench120 rc $?"; grep "decode\|prefill" $OUT/bench120.log | tail -8
timeout 230 python -m mxfp4 bench model --shape gpt-oss-20b --steps 32 --attention bf16 --out $OUT/b20 > $OUT/bench20.log 2>&1
echo "bench20 rc $?"; tail -14 $OUT/bench20.log
