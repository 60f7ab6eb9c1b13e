"""Checkpoints: MXFP4 safetensors, gpt-oss / Hugging Face names, compressed-tensors export."""
