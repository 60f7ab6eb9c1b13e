"""Find writes to a wgmma's A registers before a wait retires it, in one kernel's PTX.

PTX leaves it undefined to write the registers an in-flight `wgmma.mma_async` reads as its A
operand before a `wgmma.wait_group` has retired that wgmma's group; ptxas does not guard it,
so a symptom would be wrong results on the GPU only (though Triton 3.6's own v1 kernel has
such writes and passes its GPU checks: see scripts/compile_sm90.py). compile_sm90.py runs
this check on every kernel it compiles offline (column "A hazards").

The check is textual over the kernel's PTX, with loops taken from backward branches: a write
after the wgmma needs a retiring wait between the wgmma's commit and the write; a write
before it inside a loop that contains it (the next iteration) needs one before the loop's
back edge or, in the next iteration, before the write. A `wait_group N` retires a group when
at least N groups were committed after it.
"""

from __future__ import annotations

import re

_REG = re.compile(r"%[a-z]+\d+")
_LABEL = re.compile(r"^(\$L\w+):")
_BRANCH = re.compile(r"\bbra(?:\.uni)?\s+(\$L\w+)")


def _dest_regs(line: str) -> set:
    """Registers an instruction writes (its first operand), none for stores, branches, wgmma."""
    body = re.sub(r"^@!?%p\d+\s+", "", line)
    parts = body.split(None, 1)
    if len(parts) < 2:
        return set()
    op, ops = parts
    if op.startswith(("st.", "wgmma", "bra", "mbarrier", "cp.", "bar.", "fence", "ret", "@")):
        return set()
    first = ops[:ops.index("}") + 1] if ops.startswith("{") else ops.split(",")[0]
    return set(_REG.findall(first))


def wgmma_a_hazards(ptx: str) -> list[str]:
    """One line per write that may change a wgmma's A registers while it is in flight."""
    lines = [ln.split("//")[0].strip().rstrip(";") for ln in ptx.splitlines()]
    labels = {m.group(1): i for i, ln in enumerate(lines) if (m := _LABEL.match(ln))}
    loops = [(labels[m.group(1)], i) for i, ln in enumerate(lines)
             if (m := _BRANCH.search(ln)) and labels.get(m.group(1), i + 1) < i]
    commits = [i for i, ln in enumerate(lines) if ln.startswith("wgmma.commit_group")]
    waits = [(i, int(ln.split()[-1])) for i, ln in enumerate(lines)
             if ln.startswith("wgmma.wait_group")]

    def retired(c: int, lo: int, hi: int, extra: int | None = None) -> bool:
        """A wait in (lo, hi) retires the group committed at c: counting the commits after c
        before the wait, or (wrapped into the next iteration) extra, the commits after c to
        the back edge, plus those from the loop's start lo to the wait."""
        for q, n in waits:
            newer = sum(1 for x in commits if c < x < q) if extra is None else \
                extra + sum(1 for x in commits if lo < x < q)
            if lo < q < hi and newer >= n:
                return True
        return False

    found = []
    for p, ln in enumerate(lines):
        if not ln.startswith("wgmma.mma_async"):
            continue
        groups = re.findall(r"\{([^}]*)\}", ln)
        if len(groups) < 2:  # A from shared memory: a descriptor, no registers
            continue
        a_regs = set(_REG.findall(groups[1]))
        c = next((x for x in commits if x > p), len(lines))
        for w, other in enumerate(lines):
            hit = _dest_regs(other) & a_regs
            if not hit or w == p:
                continue
            if w > p:
                bad = not retired(c, c, w)
            else:
                loop = [(lo, hi) for lo, hi in loops if lo <= w < p <= hi]
                if not loop:
                    continue
                lo, hi = min(loop, key=lambda x: x[1] - x[0])
                rest = sum(1 for x in commits if c < x <= hi)
                bad = not (retired(c, c, hi + 1) or retired(c, lo - 1, w, extra=rest))
            if bad:
                found.append(f"line {w + 1} writes {sorted(hit)} (A of the wgmma on line "
                             f"{p + 1}) before a wait retires it")
    return found
