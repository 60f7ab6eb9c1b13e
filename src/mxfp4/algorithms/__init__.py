"""Accuracy algorithms that still produce ordinary MXFP4 weights: scale search, GPTQ, Hadamard."""
