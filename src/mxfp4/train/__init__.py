"""Training in MXFP4: quantization-aware training (prepare_qat / convert) and its layers."""

from .export import save_gpt_oss
from .qat import QATLinear, QATSummary, convert, fake_quantize, prepare_qat, set_quantization
from .qat_moe import QATMoE, moe_float

__all__ = ["QATLinear", "QATMoE", "QATSummary", "convert", "fake_quantize", "moe_float",
           "prepare_qat", "save_gpt_oss", "set_quantization"]
