# Issue 22 device batch: GPU tests, then `mxfp4 bench model` for 120b (both attention variants)
# and 20b against transformers; results under $OUT/bench.
mkdir -p $OUT/bench; export PYTHONPATH=src
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_gpt_oss_decode.py tests/test_kernels_decode_ops.py \
  tests/test_kernels_dense_gemv.py tests/test_nn_linear_layout.py tests/test_gpt_oss_mxfp4_attention.py \
  > $OUT/pytest.log 2>&1
echo "pytest rc $?"; grep -E "passed|failed" $OUT/pytest.log | tail -2; grep FAILED $OUT/pytest.log | head
timeout 200 python -m mxfp4 bench model --shape gpt-oss-120b --steps 32 --out $OUT/bench > $OUT/bench120.log 2>&1
echo "bench120 rc $?"; tail -22 $OUT/bench120.log
timeout 170 python -m mxfp4 bench model --shape gpt-oss-20b --steps 32 --attention bf16 --out $OUT/bench > $OUT/bench20.log 2>&1
echo "bench20 rc $?"; tail -14 $OUT/bench20.log
