"""Test setup: offline by design, and Triton in the interpreter when there is no GPU.

The Hugging Face libraries read their offline switches when they are imported, so these are set
here, before any test module imports them. tests/network_guard.py (loaded by pyproject.toml's
pytest options) stops and fails any attempt to reach a host other than this machine.

TRITON_INTERPRET must be set before any module decorates a kernel with @triton.jit, so it is set
here, at collection start. On a machine with CUDA the kernel tests run on the GPU instead.
"""

import os

import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
