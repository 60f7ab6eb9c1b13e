# Issue 22 device batch, short: GPU tests, then 120b decode at batch 1 and 64 and one prefill.
mkdir -p $OUT/bench; export PYTHONPATH=src
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 100 python -m pytest -q -x -p no:cacheprovider tests/test_gpt_oss_decode.py tests/test_kernels_decode_ops.py \
  tests/test_kernels_dense_gemv.py tests/test_nn_linear_layout.py > $OUT/pytest.log 2>&1
echo "pytest rc $?"; grep -E "passed|failed" $OUT/pytest.log | tail -2; grep FAILED $OUT/pytest.log | head
timeout 170 python -m mxfp4 bench model --shape gpt-oss-120b --batches 1,64 --prefill-batches 1 --steps 32 \
  --out $OUT/bench > $OUT/bench120.log 2>&1
echo "bench120 rc $?"; tail -16 $OUT/bench120.log
