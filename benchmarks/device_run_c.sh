# Issue 22 device batch: the GPU test files of the fused path and of issue 9's model.
export PYTHONPATH=src; mkdir -p $OUT
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 170 python -m pytest -q -p no:cacheprovider tests/test_gpt_oss_decode.py tests/test_kernels_decode_ops.py \
  tests/test_kernels_dense_gemv.py tests/test_nn_linear_layout.py tests/test_gpt_oss_model.py \
  tests/test_gpt_oss_mxfp4_attention.py > $OUT/pytest.log 2>&1
echo "pytest rc $?"; grep -E "passed|failed" $OUT/pytest.log | tail -2; grep FAILED $OUT/pytest.log | head
