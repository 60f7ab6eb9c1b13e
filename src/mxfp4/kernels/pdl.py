"""Programmatic dependent launch (Hopper and newer): overlap a kernel's launch with the end of
the kernel before it in the stream.

A kernel launched with `launch_options(device)` may be scheduled while its predecessor is still
running. Before it touches global memory it calls `wait_for_inputs()` (PTX griddepcontrol.wait:
returns once the predecessor has finished and its writes are visible), and once its own main
loop is done it calls `release_dependents()` (griddepcontrol.launch_dependents), so that the
next kernel's programs can be placed while this one's last programs run their epilogues. Both
are no-ops before sm_90 and under TRITON_INTERPRET=1 (which cannot run PTX).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl  # noqa: F401 (the interpreter looks for it in a jit function's globals)
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
from triton.language.target_info import cuda_capability_geq

from .unpack import INTERPRET


@triton.jit
def wait_for_inputs():
    if not INTERPRET:
        if cuda_capability_geq(9, 0):
            gdc_wait()


@triton.jit
def release_dependents():
    if not INTERPRET:
        if cuda_capability_geq(9, 0):
            gdc_launch_dependents()


def launch_options(device: torch.device) -> dict:
    """Launch keywords for a kernel that calls wait_for_inputs() first: PDL on sm_90+ GPUs."""
    return {"launch_pdl": True} if _pdl(device) else {}


@functools.lru_cache(maxsize=None)
def _pdl(device: torch.device) -> bool:
    if device.type != "cuda" or INTERPRET.value:
        return False
    return torch.cuda.get_device_capability(device)[0] >= 9
