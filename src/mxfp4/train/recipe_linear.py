"""RecipeLinear: a drop-in nn.Linear whose three GEMMs follow a training Recipe (emulated MXFP4).

Each quantized GEMM quantize-dequantizes its two operands along its reduction axis
(`hadamard_sr.quantize_dequantize`: the fused Triton kernel on CUDA) and multiplies the
dequantized values with torch (cuBLAS on CUDA). Every MXFP4 value is exact in bf16 and float32,
so the GEMM adds only its own float32 accumulation. A bf16 GEMM computes exactly what
nn.Linear's forward or autograd computes, so with every GEMM in bf16 the layer is nn.Linear
bit for bit.

Randomness (stochastic rounding, Hadamard signs) comes from derive_seed(recipe.seed,
layer_seed, step, gemm, operand); `step` counts training-mode forward calls, or is set by the
trainer with `set_step` so that a resumed run draws the same numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.convert import select_modules
from .hadamard_sr import derive_seed, quantize_dequantize, quantize_dequantize_both
from .recipes import Recipe, recipe as lookup

FORWARD, DGRAD, WGRAD = 0, 1, 2


def _sign_seed(recipe: Recipe, spec, gemm: int, layer_seed: int, step_seed: int) -> int | None:
    """The seed of the sign vector both operands of one GEMM share (hadamard_sr.random_signs;
    the kernel draws it in registers), or None: no signs or no Hadamard."""
    if not spec.hadamard or recipe.hadamard_signs == "none":
        return None
    if recipe.hadamard_signs == "fixed":
        return derive_seed(recipe.seed, layer_seed, gemm)
    return derive_seed(step_seed, gemm, 2)


def _qgemm(a, b, spec, a_axis, b_axis, recipe, gemm, layer_seed, step_seed):
    """Quantize-dequantize a (reduction along a_axis) and b (along b_axis) with one GEMM's spec."""
    signs = _sign_seed(recipe, spec, gemm, layer_seed, step_seed)
    qa = quantize_dequantize(a, a_axis, spec, seed=derive_seed(step_seed, gemm, 0),
                             sign_seed=signs, dtype=a.dtype)
    qb = quantize_dequantize(b, b_axis, spec, seed=derive_seed(step_seed, gemm, 1),
                             sign_seed=signs, dtype=a.dtype)
    return qa, qb, _alpha(spec)


def _alpha(spec) -> float:
    return 1.0 / spec.hadamard if spec.hadamard else 1.0  # H·Hᵀ = size·I


def _operand(t, uses, recipe, layer_seed, step_seed, dtype):
    """t quantize-dequantized for each of its uses [(gemm, spec, axis, operand) or None, ...]:
    one pass along both axes where two uses need it (kernels.train_quantize reads t once), the
    same values as one _qgemm operand each. Returns a list aligned with `uses` (None stays)."""
    live = [u for u in uses if u is not None]

    def seeds(u):
        gemm, spec, _, operand = u
        return derive_seed(step_seed, gemm, operand), _sign_seed(recipe, spec, gemm, layer_seed,
                                                                 step_seed)
    if len(live) == 2 and {live[0][2], live[1][2]} == {0, 1}:
        u1, u0 = sorted(live, key=lambda u: -u[2])
        (s1, g1), (s0, g0) = seeds(u1), seeds(u0)
        q1, q0 = quantize_dequantize_both(t, u1[1], u0[1], seeds=(s1, s0), sign_seeds=(g1, g0),
                                          dtype=dtype)
        return [None if u is None else q1 if u is u1 else q0 for u in uses]
    out = []
    for u in uses:
        if u is None:
            out.append(None)
            continue
        seed, signs = seeds(u)
        out.append(quantize_dequantize(t, u[2], u[1], seed=seed, sign_seed=signs, dtype=dtype))
    return out


class MXFP4LinearFunction(torch.autograd.Function):
    """y = x · Wᵀ + b with each GEMM (forward, dgrad, wgrad) as `recipe` says.

    apply(x, weight, bias, recipe, layer_seed, step). x is [..., K], weight [N, K], bias [N] or
    None. The forward pass also quantizes what backward will need from x (its wgrad operand,
    along the tokens) and from W (its dgrad operand, along N) in the same reads, and saves
    those instead of x and W. The token axis of wgrad is zero-padded to whole blocks when
    needed (then x is saved and quantized in backward).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, recipe: Recipe, layer_seed: int, step: int):
        step_seed = derive_seed(recipe.seed, layer_seed, step)
        ctx.recipe, ctx.layer_seed, ctx.step_seed = recipe, layer_seed, step_seed
        ctx.has_bias = bias is not None
        fwd, dgrad, wgrad = recipe.forward, recipe.dgrad, recipe.wgrad
        need_dx, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        x2 = x.reshape(-1, x.shape[-1])
        # which later uses each operand gets quantized for now: (gemm, spec, axis, operand)
        x_wgrad = need_dw and wgrad.quantized and x2.shape[0] % wgrad.multiple() == 0
        w_dgrad = need_dx and dgrad.quantized
        xq, xw = _operand(x2, [(FORWARD, fwd, 1, 0) if fwd.quantized else None,
                               (WGRAD, wgrad, 0, 1) if x_wgrad else None],
                          recipe, layer_seed, step_seed, x.dtype)
        wq, wd = _operand(weight, [(FORWARD, fwd, 1, 1) if fwd.quantized else None,
                                   (DGRAD, dgrad, 0, 1) if w_dgrad else None],
                          recipe, layer_seed, step_seed, x.dtype)
        ctx.x_ready, ctx.w_ready = x_wgrad, w_dgrad
        ctx.x_shape, ctx.w_dtype = x.shape, weight.dtype
        ctx.save_for_backward(xw if x_wgrad else x2 if need_dw else None,
                              wd if w_dgrad else weight if need_dx else None)
        if not fwd.quantized:
            return F.linear(x, weight, bias)  # what nn.Linear computes
        alpha = _alpha(fwd)
        if bias is not None:
            y2 = torch.addmm(bias, xq, wq.t(), alpha=alpha)
        else:
            y2 = xq.mm(wq.t())
            if alpha != 1.0:
                y2.mul_(alpha)  # a power of two: exact
        return y2.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x2, w = ctx.saved_tensors
        recipe, layer_seed, step_seed = ctx.recipe, ctx.layer_seed, ctx.step_seed
        dgrad, wgrad = recipe.dgrad, recipe.wgrad
        dy2 = dy.reshape(-1, dy.shape[-1])
        need_dx, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx = dw = db = None
        dyd, dyw = _operand(dy2, [(DGRAD, dgrad, 1, 0) if need_dx and dgrad.quantized else None,
                                  (WGRAD, wgrad, 0, 0) if need_dw and ctx.x_ready else None],
                            recipe, layer_seed, step_seed, dy2.dtype)
        if need_dx:
            if not dgrad.quantized:
                dx2 = dy2.mm(w)  # as addmm's autograd: grad · mat2ᵀ with mat2 = Wᵀ
            else:
                dx2 = dyd.mm(w)
                if _alpha(dgrad) != 1.0:
                    dx2.mul_(_alpha(dgrad))
            dx = dx2.view(ctx.x_shape)
        if need_dw:
            if not wgrad.quantized:
                dw = dy2.t().mm(x2)  # as addmm's autograd for a transposed mat2
            elif ctx.x_ready:
                dw = dyw.t().mm(x2)
            else:  # tokens not a whole number of blocks: pad both with zeros
                pad = -x2.shape[0] % wgrad.multiple()
                xp, dyp = F.pad(x2, (0, 0, 0, pad)), F.pad(dy2, (0, 0, 0, pad))
                dyq, xq, _ = _qgemm(dyp, xp.to(dy2.dtype), wgrad, 0, 0, recipe, WGRAD,
                                    layer_seed, step_seed)
                dw = dyq.t().mm(xq)
            if wgrad.quantized and _alpha(wgrad) != 1.0:
                dw.mul_(_alpha(wgrad))
            dw = dw.to(ctx.w_dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(0)
        return dx, dw, db, None, None, None


class RecipeLinear(nn.Module):
    """nn.Linear with its GEMMs per a training Recipe; holds the float weight (and bias).

    recipe: a Recipe or a preset name (mxfp4.train.recipes.PRESETS). layer_seed: this layer's
    share of the randomness (apply_recipe numbers the layers). `step` counts training-mode
    forward calls; set it (or call set_step on the model) to replay a run's random draws.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 recipe: Recipe | str = "bf16", layer_seed: int = 0, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.recipe = lookup(recipe)
        error = self.recipe.layer_error(in_features, out_features)
        if error:
            raise ValueError(error)
        self.layer_seed, self.step = int(layer_seed), 0
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw))
        self.bias = nn.Parameter(torch.empty(out_features, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialization."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_linear(cls, linear: nn.Linear, recipe: Recipe | str, layer_seed: int = 0) -> RecipeLinear:
        """A RecipeLinear sharing `linear`'s weight and bias Parameters (optimizers and tied
        weights keep pointing at them)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = linear.in_features, linear.out_features
        layer.recipe = lookup(recipe)
        error = layer.recipe.layer_error(linear.in_features, linear.out_features)
        if error:
            raise ValueError(error)
        layer.layer_seed, layer.step = int(layer_seed), 0
        layer.weight = linear.weight
        layer.bias = linear.bias
        layer.train(linear.training)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = self.step
        if self.training:
            self.step += 1
        w, b = self.weight, self.bias
        kind = x.device.type
        if torch.is_autocast_enabled(kind):  # as F.linear under autocast: all in its dtype
            dt = torch.get_autocast_dtype(kind)
            x, w, b = x.to(dt), w.to(dt), None if b is None else b.to(dt)
            with torch.autocast(kind, enabled=False):
                return MXFP4LinearFunction.apply(x, w, b, self.recipe, self.layer_seed, step)
        return MXFP4LinearFunction.apply(x, w, b, self.recipe, self.layer_seed, step)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, recipe={self.recipe.name!r}")


def apply_recipe(model: nn.Module, recipe: Recipe | str, *, include=None,
                 exclude=None) -> dict:
    """Swap the model's nn.Linear layers for RecipeLinear in place (parameters shared).

    Layers are chosen as mxfp4.quantize_model chooses them (include/exclude glob or "re:"
    patterns; the LM head and MoE routers kept unless named in include). Returns {"swapped":
    [names], "skipped": {name: reason}}; raises ValueError when nothing can be swapped.
    """
    rec = lookup(recipe)
    chosen, skipped = select_modules(model, include=include, exclude=exclude, block_size=1)
    swapped = []
    for index, (name, mod) in enumerate(chosen.items()):
        if not name:
            skipped[name] = "the model itself is a Linear: wrap it in a module first"
            continue
        if type(mod) is not nn.Linear:
            skipped[name] = f"{type(mod).__name__} is not an nn.Linear"
            continue
        error = rec.layer_error(mod.in_features, mod.out_features)
        if error:
            skipped[name] = error
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, RecipeLinear.from_linear(mod, rec, layer_seed=index))
        swapped.append(name)
    if not swapped:
        why = "; ".join(f"{n}: {r}" for n, r in skipped.items()) or "the model has no nn.Linear"
        raise ValueError(f"apply_recipe found no Linear layer to swap ({why})")
    return {"swapped": swapped, "skipped": skipped}


def set_step(model: nn.Module, step: int) -> int:
    """Set every RecipeLinear's step counter (the random draws of that step follow); returns
    how many layers were set."""
    count = 0
    for mod in model.modules():
        if isinstance(mod, RecipeLinear):
            mod.step = int(step)
            count += 1
    return count
