# Issue 22 device batch: 120b bench (every row, both attention variants), a profile of the
# graph-replayed decode step, then the GPU tests with what time is left. Results under $OUT.
mkdir -p $OUT/bench; export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 330 python -m mxfp4 bench model --shape gpt-oss-120b --steps 32 --out $OUT/bench > $OUT/bench120.log 2>&1
echo "bench120 rc $?"; tail -16 $OUT/bench120.log
timeout 150 python benchmarks/profile_decode.py --batches 1,64 > $OUT/profile.log 2>&1
echo "profile rc $?"; head -c 5000 $OUT/profile.log
timeout 95 python -m pytest -q -x -p no:cacheprovider tests/test_gpt_oss_decode.py tests/test_kernels_decode_ops.py \
  tests/test_kernels_dense_gemv.py tests/test_nn_linear_layout.py > $OUT/pytest.log 2>&1
echo "pytest rc $?"; grep -E "passed|failed" $OUT/pytest.log | tail -2; grep FAILED $OUT/pytest.log | head
