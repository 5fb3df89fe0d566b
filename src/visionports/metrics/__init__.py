"""Evaluation metrics of the video tasks VidEoMT reports, as plain numpy / pycocotools functions.

``ytvis_average_precision`` (YouTube-VIS / OVIS AP), ``VideoPanopticQuality`` (VIPSeg VPQ),
``SegmentationTrackingQuality`` (STQ) and ``VideoSemanticQuality`` (VSPW mIoU and mVC8 / mVC16).
"""

from .video_panoptic import SegmentationTrackingQuality, VideoPanopticQuality
from .video_semantic import VideoSemanticQuality
from .ytvis_ap import ytvis_average_precision

__all__ = [
    "SegmentationTrackingQuality",
    "VideoPanopticQuality",
    "VideoSemanticQuality",
    "ytvis_average_precision",
]
