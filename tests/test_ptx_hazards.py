"""scripts/ptx_hazards.py: writes to an in-flight wgmma's A registers, found in PTX text (the
offline check scripts/compile_sm90.py runs on every Gluon kernel; on the GPU such a write
gives wrong results only)."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "ptx_hazards", Path(__file__).resolve().parents[1] / "scripts" / "ptx_hazards.py")
ptx_hazards = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ptx_hazards)

MMA = ("wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {{%r10, %r11}}, {{{a}}}, %rd1, "
       "%p1, 1, 1, 0;")


def step(a: str, wait: int) -> str:
    regs = [r.strip() for r in a.split(",")]
    return "\n".join([*(f"mov.b32 {r}, %r9;" for r in regs), "wgmma.fence.sync.aligned;",
                      MMA.format(a=a), "wgmma.commit_group.sync.aligned;",
                      f"wgmma.wait_group.sync.aligned {wait};"])


def loop(body: str) -> str:
    return f"$L__BB0_1:\n{body}\n@%p2 bra $L__BB0_1;\nwgmma.wait_group.sync.aligned 0;"


def test_one_register_set_a_step_is_a_hazard_with_one_wgmma_in_flight():
    found = ptx_hazards.wgmma_a_hazards(loop(step("%r1, %r2", 1)))
    assert len(found) == 2 and "%r1" in found[0]


def test_waiting_for_every_wgmma_is_safe():
    assert ptx_hazards.wgmma_a_hazards(loop(step("%r1, %r2", 0))) == []


def test_two_register_sets_on_alternate_steps_are_safe():
    """rs_gemm_kernel's unrolled loop: each set is rewritten only after its wgmma retired."""
    assert ptx_hazards.wgmma_a_hazards(loop(step("%r1, %r2", 1) + "\n"
                                            + step("%r3, %r4", 1))) == []


def test_a_write_between_the_wgmma_and_its_wait_is_found():
    ptx = (step("%r1", 1) + "\nmov.b32 %r1, %r8;\n" + step("%r5", 1)
           + "\nwgmma.wait_group.sync.aligned 0;")
    found = ptx_hazards.wgmma_a_hazards(ptx)
    assert len(found) == 1 and "%r1" in found[0]


@pytest.mark.parametrize("line, regs", [
    ("mov.b32 %r1, {%rs1, %rs2}", {"%r1"}),
    ("mov.b32 {%rs1, %rs2}, %r3", {"%rs1", "%rs2"}),
    ("@%p1 add.s32 %r4, %r5, 1", {"%r4"}),
    ("st.shared.b32 [%r1], %r2", set()),
    ("wgmma.fence.sync.aligned", set()),
])
def test_destinations(line, regs):
    assert ptx_hazards._dest_regs(line) == regs
