"""Shared checks and encodings of per-video label maps (semantic class + instance / track id)."""

from __future__ import annotations

import numpy as np


def check_video(
    semantic: np.ndarray, instance: np.ndarray | None, num_classes: int, ignore_label: int, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """``semantic`` (and ``instance``) as int64 ``[T, H, W]`` arrays; classes in ``[0, num_classes)`` or void."""
    semantic = np.asarray(semantic)
    if semantic.ndim != 3:
        raise ValueError(f"{name} semantic map must be [T, H, W], got shape {list(semantic.shape)}")
    if not np.issubdtype(semantic.dtype, np.integer):
        raise ValueError(f"{name} semantic map must hold integers, got {semantic.dtype}")
    if semantic.dtype.itemsize < 4 or semantic.dtype.kind == "u":
        semantic = semantic.astype(np.int64)
    low, high = (int(semantic.min()), int(semantic.max())) if semantic.size else (0, 0)
    if low < 0 or high >= num_classes:
        bad = (semantic != ignore_label) & ((semantic < 0) | (semantic >= num_classes))
        if bad.any():
            raise ValueError(
                f"{name} semantic map has class {int(semantic[bad][0])} outside [0, {num_classes}) "
                f"that is not the ignore label {ignore_label}"
            )
    if instance is None:
        return semantic, None
    instance = np.asarray(instance)
    if instance.shape != semantic.shape:
        raise ValueError(
            f"{name} instance map {list(instance.shape)} differs from semantic {list(semantic.shape)}"
        )
    if not np.issubdtype(instance.dtype, np.integer):
        raise ValueError(f"{name} instance map must hold integers, got {instance.dtype}")
    if instance.dtype.itemsize < 4 or instance.dtype.kind == "u":
        instance = instance.astype(np.int64)
    if instance.size and (int(instance.min()) < 0 or int(instance.max()) >= 2**31):
        raise ValueError(f"{name} instance ids must lie in [0, 2**31)")
    return semantic, instance


def check_ignore(num_classes: int, ignore_label: int) -> None:
    if 0 <= ignore_label < num_classes:
        raise ValueError(f"ignore_label {ignore_label} must not be a class index (num_classes={num_classes})")


def compact_segments(
    semantic: np.ndarray, instance: np.ndarray, is_thing: np.ndarray, ignore_label: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense segment ids of a video without sorting its pixels: ``(ids, classes, instances)``.

    ``ids`` has the shape of ``semantic``; segment ``k`` is class ``classes[k]`` (-1 = void) and track id
    ``instances[k]`` (0 for stuff), and segments are numbered in ``(class, instance)`` order, void first.
    """
    num_classes = len(is_thing)  # void pixels get base 0 and instance 0, so id 0 when present
    if not 0 <= ignore_label < 2**16:
        semantic = np.where(semantic == ignore_label, num_classes, semantic)
        ignore_label = num_classes
    size = max(num_classes, ignore_label) + 1
    thing_lut = np.zeros(size, dtype=np.int64)
    thing_lut[:num_classes] = is_thing
    inst = thing_lut[semantic] * instance
    top = int(inst.max()) if inst.size else 0
    if top < 2**16:
        inst_values, inst_index, width = None, inst, top + 1
    else:  # large track ids: compact them first (a sort, only in this case)
        inst_values, inst_index = np.unique(inst, return_inverse=True)
        inst_index, width = inst_index.reshape(inst.shape), len(inst_values)
    base_lut = np.zeros(size, dtype=np.int64)
    base_lut[:num_classes] = (np.arange(num_classes) + 1) * width
    raw = base_lut[semantic] + inst_index
    present = np.flatnonzero(np.bincount(raw.reshape(-1)))
    lookup = np.zeros(int(present[-1]) + 1 if len(present) else 1, dtype=np.int64)
    lookup[present] = np.arange(len(present))
    classes = present // width - 1
    instances = present % width if inst_values is None else inst_values[present % width]
    return lookup[raw], classes, np.where(classes < 0, 0, instances)
