"""Triton kernels for MXFP4: quantize/dequantize, the W4A16 GEMM and the MX x MX matmul.

Each kernel names its reference twin; `mxfp4.ops` picks a kernel for CUDA tensors (or, with
TRITON_INTERPRET=1, for CPU tensors when backend="triton") and the reference elsewhere.
Importing this package needs triton; `mxfp4.ops` imports it lazily.
"""
