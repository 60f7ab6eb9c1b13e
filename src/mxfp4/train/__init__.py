"""Training in MXFP4: quantization-aware training (prepare_qat / convert, qat.py, qat_moe.py) and
the fully quantized training recipes (recipes.py)."""

from . import recipes
from .export import save_gpt_oss
from .qat import QATLinear, QATSummary, convert, fake_quantize, prepare_qat, set_quantization
from .qat_moe import QATMoE, moe_float
from .recipes import *  # noqa: F401,F403

__all__ = ["QATLinear", "QATMoE", "QATSummary", "convert", "fake_quantize", "moe_float",
           "prepare_qat", "save_gpt_oss", "set_quantization", *getattr(recipes, "__all__", ())]
