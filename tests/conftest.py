"""Test setup: without a GPU, Triton kernels run in the interpreter (TRITON_INTERPRET=1).

The variable must be set before any module decorates a kernel with @triton.jit, so it is set
here, at collection start. On a machine with CUDA the kernel tests run on the GPU instead.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
