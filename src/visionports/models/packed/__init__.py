"""Packed variable-resolution ViT encoders (AIMv2, SigLIP2 naflex, DINOv3): many images in one pass."""

from .aimv2_packed import Aimv2PackedVisionModel
from .dinov3_packed import Dinov3PackedVisionModel
from .image_processing_packed import PackedImageProcessor
from .packing import cu_seqlens_from_grid_thw, pack_images, unpack
from .siglip2_packed import Siglip2PackedVisionModel

__all__ = [
    "Aimv2PackedVisionModel",
    "Dinov3PackedVisionModel",
    "PackedImageProcessor",
    "Siglip2PackedVisionModel",
    "cu_seqlens_from_grid_thw",
    "pack_images",
    "unpack",
]
