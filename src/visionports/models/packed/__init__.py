"""Packed variable-resolution ViT encoders (AIMv2, SigLIP2 naflex, DINOv3): many images in one pass."""
