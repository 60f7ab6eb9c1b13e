"""Fully quantized training recipes: how each GEMM of a linear layer sees its operands.

A linear layer runs three GEMMs per step:

    forward  y  = x · Wᵀ     reduction over K (in_features):  x along K, W along K
    dgrad    dx = dy · W     reduction over N (out_features): dy along N, W along N
    wgrad    dW = dyᵀ · x    reduction over M (tokens):       dy along M, x along M

A `Recipe` gives each GEMM a `GemmSpec`: bf16 (the operands as they are) or MXFP4 (both
operands quantized in blocks along that GEMM's reduction axis, then dequantized: emulation, for
Hopper has no FP4 tensor cores), nearest or stochastic rounding, and an optional blockwise
random Hadamard transform applied to both operands along the reduction axis, which leaves the
exact product unchanged. `recipe(name)` looks up the named arms of issue 23 (PRESETS).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..codec import ROUNDINGS, SCALE_RULES
from ..format import BLOCK_SIZE

FORMATS = ("bf16", "mxfp4")
GEMMS = ("forward", "dgrad", "wgrad")
SIGN_MODES = ("per_step", "fixed", "none")
HADAMARD_SIZES = (16, 32, 64, 128)  # the kernel rotates with a tensor-core dot: >= 16; H in registers: <= 128


@dataclass(frozen=True)
class GemmSpec:
    """Operands of one GEMM. format "bf16" leaves them alone (the GEMM runs in the layer's
    dtype, exactly as nn.Linear); "mxfp4" quantizes both along the reduction axis.

    rounding: "nearest" (ties to even) or "stochastic" (unbiased when nothing clips: pair it
    with scale_rule="ceil"). hadamard: 0, or the block size of the random Hadamard transform
    applied to both operands along the reduction axis before quantization.
    """

    format: str = "bf16"
    rounding: str = "nearest"
    scale_rule: str = "even"
    block_size: int = BLOCK_SIZE
    hadamard: int = 0

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"GemmSpec format must be one of {FORMATS}, got {self.format!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"GemmSpec rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if self.scale_rule not in SCALE_RULES:
            raise ValueError(f"GemmSpec scale_rule must be one of {SCALE_RULES}, "
                             f"got {self.scale_rule!r}")
        bs = self.block_size
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 2 or bs > 1024 or bs & (bs - 1):
            raise ValueError(f"GemmSpec block_size must be a power of two from 2 to 1024, got {bs!r}")
        if self.hadamard not in (0,) + HADAMARD_SIZES:
            raise ValueError(f"GemmSpec hadamard must be 0 (off) or one of {HADAMARD_SIZES}, "
                             f"got {self.hadamard!r}")
        if self.hadamard and self.format != "mxfp4":
            raise ValueError("a Hadamard transform only makes sense before MXFP4 quantization: "
                             "set format='mxfp4' or hadamard=0")

    @property
    def quantized(self) -> bool:
        return self.format == "mxfp4"

    def multiple(self) -> int:
        """The reduction length must be a multiple of this (1 for an unquantized GEMM)."""
        if not self.quantized:
            return 1
        return max(self.block_size, self.hadamard)  # both powers of two


@dataclass(frozen=True)
class Recipe:
    """One GemmSpec per GEMM, the Hadamard sign mode and the base seed.

    hadamard_signs: "per_step" draws a fresh random sign vector for every GEMM of every
    training step (Tseng et al. 2025's random Hadamard transform); "fixed" draws one per layer
    and GEMM from the seed and keeps it; "none" uses the plain Hadamard matrix (a deterministic
    rotation).
    """

    name: str = "custom"
    forward: GemmSpec = field(default_factory=GemmSpec)
    dgrad: GemmSpec = field(default_factory=GemmSpec)
    wgrad: GemmSpec = field(default_factory=GemmSpec)
    hadamard_signs: str = "per_step"
    seed: int = 0

    def __post_init__(self):
        for g in GEMMS:
            if not isinstance(getattr(self, g), GemmSpec):
                raise TypeError(f"Recipe.{g} must be a GemmSpec, got {type(getattr(self, g)).__name__}")
        if self.hadamard_signs not in SIGN_MODES:
            raise ValueError(f"hadamard_signs must be one of {SIGN_MODES}, got {self.hadamard_signs!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"Recipe seed must be an int, got {self.seed!r}")

    def specs(self) -> dict[str, GemmSpec]:
        return {g: getattr(self, g) for g in GEMMS}

    @property
    def quantized(self) -> bool:
        return any(s.quantized for s in self.specs().values())

    def layer_error(self, in_features: int, out_features: int) -> str | None:
        """Why a Linear(in_features, out_features) cannot take this recipe, or None.

        The forward GEMM reduces over in_features, dgrad over out_features; the token axis of
        wgrad is zero-padded to whole blocks when needed (zeros add nothing to dW)."""
        for gemm, length, what in (("forward", in_features, "in_features"),
                                   ("dgrad", out_features, "out_features")):
            spec = getattr(self, gemm)
            if length % spec.multiple():
                return (f"recipe {self.name!r}: the {gemm} GEMM reduces over {what} = {length}, "
                        f"which is not a multiple of its block size {spec.block_size}"
                        + (f" and Hadamard size {spec.hadamard}" if spec.hadamard else ""))
        return None


_NEAREST = GemmSpec("mxfp4", "nearest", "even")
_SR = GemmSpec("mxfp4", "stochastic", "ceil")  # ceil: no element clips, so SR stays unbiased
_SR_HADAMARD = replace(_SR, hadamard=64)
_BF16 = GemmSpec()
_NEAREST_HADAMARD = replace(_NEAREST, hadamard=64)

# The arms of issue 23. Forward GEMMs round to nearest with the "even" scale rule (the best
# data-free rule of docs/accuracy.md); SR backward GEMMs use "ceil". Hadamard size 64 is our
# choice (any of HADAMARD_SIZES works).
PRESETS: dict[str, Recipe] = {r.name: r for r in (
    Recipe("bf16"),
    Recipe("mxfp4-forward", forward=_NEAREST),
    Recipe("mxfp4-nearest", forward=_NEAREST, dgrad=_NEAREST, wgrad=_NEAREST),
    Recipe("mxfp4-sr", forward=_NEAREST, dgrad=_SR, wgrad=_SR),
    Recipe("mxfp4-sr-hadamard", forward=_NEAREST, dgrad=_SR_HADAMARD, wgrad=_SR_HADAMARD),
    Recipe("mxfp4-sr-hadamard-fixed", forward=_NEAREST, dgrad=_SR_HADAMARD, wgrad=_SR_HADAMARD,
           hadamard_signs="none"),
    Recipe("mxfp4-wgrad", wgrad=_SR),
    # the Hadamard on the forward GEMM too (as Quartet does): x and W rotated along K spread
    # their outliers over the block before the scale is chosen; "mse" picks each block's
    # scale by its rounding error instead of its maximum alone
    Recipe("mxfp4-hadamard-all", forward=_NEAREST_HADAMARD, dgrad=_SR_HADAMARD,
           wgrad=_SR_HADAMARD, hadamard_signs="none"),
    Recipe("mxfp4-hadamard-all-mse", forward=replace(_NEAREST_HADAMARD, scale_rule="mse"),
           dgrad=_SR_HADAMARD, wgrad=_SR_HADAMARD, hadamard_signs="none"),
)}


def recipe(name: str | Recipe, **changes) -> Recipe:
    """The preset called `name` (see PRESETS), with dataclass fields replaced by `changes`
    (e.g. seed=1). A Recipe passes through (with the changes applied)."""
    if isinstance(name, Recipe):
        return replace(name, **changes) if changes else name
    if name not in PRESETS:
        raise ValueError(f"unknown training recipe {name!r}; the recipes are: "
                         f"{', '.join(PRESETS)} (or build a mxfp4.train.recipes.Recipe)")
    return replace(PRESETS[name], **changes) if changes else PRESETS[name]
