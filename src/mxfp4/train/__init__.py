"""Training in MXFP4: quantization-aware training (prepare_qat / convert: qat.py, qat_moe.py) and
the fully quantized training recipes (recipes.py, recipe_linear.py)."""

from ..models.gpt_oss_save import save_gpt_oss  # also GptOss.save_pretrained
from .qat import QATLinear, QATSummary, convert, fake_quantize, prepare_qat, set_quantization
from .qat_moe import QATMoE, moe_float
from .recipe_linear import MXFP4LinearFunction, RecipeLinear, apply_recipe, set_step
from .recipes import PRESETS, GemmSpec, Recipe, recipe

__all__ = ["GemmSpec", "MXFP4LinearFunction", "PRESETS", "QATLinear", "QATMoE", "QATSummary",
           "Recipe", "RecipeLinear", "apply_recipe", "convert", "fake_quantize", "moe_float",
           "prepare_qat", "recipe", "save_gpt_oss", "set_quantization", "set_step"]
