# Issue 22 device batch A: GPU tests, graph check, 120b bench (both attention variants).
mkdir -p $OUT; export PYTHONPATH=src
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 220 python -m pytest -q -p no:cacheprovider tests/test_gpt_oss_decode.py tests/test_kernels_decode_ops.py \
  tests/test_kernels_dense_gemv.py tests/test_nn_linear_layout.py tests/test_gpt_oss_model.py \
  tests/test_gpt_oss_mxfp4_attention.py > $OUT/pytest.log 2>&1
echo "pytest rc $?"; grep -E "passed|failed" $OUT/pytest.log | tail -2; grep FAILED $OUT/pytest.log | head
timeout 60 python benchmarks/decode_graph_check.py tiny > $OUT/tiny.log 2>&1; tail -4 $OUT/tiny.log
timeout 300 python -m mxfp4 bench model --shape gpt-oss-120b --steps 64 --out $OUT/bench > $OUT/bench120.log 2>&1
echo "bench rc $?"; tail -25 $OUT/bench120.log
