"""Reading COCO-format detection folders (``images`` + ``annotations/instances_{split}.json``) with checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import CocoFormatError
from .annotation_files import malformed, read_annotation_json, sorted_categories


@dataclass
class CocoImage:
    image_id: int
    path: Path
    width: int
    height: int
    boxes_xywh: list[list[float]] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)


@dataclass
class CocoSplit:
    annotation_file: Path
    images: list[CocoImage]
    category_ids: list[int]
    category_names: list[str]
    skipped: dict[str, int]

    def label_of(self, category_id: int) -> int:
        """Contiguous label 0..C-1 of a category id (the sorted order of the file's categories)."""
        return self.category_ids.index(category_id)


def _image_folder(root: Path, split: str) -> Path:
    for candidate in (root / split, root / f"{split}2017", root / "images" / split, root / "images"):
        if candidate.is_dir():
            return candidate
    raise CocoFormatError(
        f"{root}: no image folder for split {split!r} (tried {split}/, {split}2017/, images/)"
    )


def load_coco_split(root: str | Path, split: str = "val") -> CocoSplit:
    """Read ``root/annotations/instances_{split}.json`` and locate its images.

    Raises :class:`CocoFormatError` for malformed files, unknown category ids, missing image files and
    boxes with non-positive size. Boxes partly outside the image are clipped to it and crowd annotations
    are skipped (both counted in ``skipped``), as COCO evaluation ignores crowds as targets.
    """
    root = Path(root)
    annotation_file = root / "annotations" / f"instances_{split}.json"
    data = _read_annotations(root, annotation_file)
    categories = _categories(data, annotation_file)
    images = _images(data, annotation_file, _image_folder(root, split))
    skipped = _add_annotations(data, annotation_file, images, {cid for cid, _ in categories})
    return CocoSplit(
        annotation_file=annotation_file,
        images=sorted(images.values(), key=lambda im: im.image_id),
        category_ids=[cid for cid, _ in categories],
        category_names=[name for _, name in categories],
        skipped=skipped,
    )


def _malformed(annotation_file: Path, expected: str):
    return malformed(annotation_file, expected, CocoFormatError)


def _read_annotations(root: Path, annotation_file: Path) -> dict:
    if not annotation_file.is_file():
        raise CocoFormatError(f"{root}: missing {annotation_file.relative_to(root)}")
    return read_annotation_json(annotation_file, ("images", "annotations", "categories"), CocoFormatError)


def _categories(data: dict, annotation_file: Path) -> list[tuple[int, str]]:
    return sorted_categories(data, annotation_file, CocoFormatError)


def _images(data: dict, annotation_file: Path, folder: Path) -> dict[int, CocoImage]:
    images: dict[int, CocoImage] = {}
    for entry in data["images"]:
        with _malformed(annotation_file, f"image entry {entry!r} needs id, file_name, width, height"):
            image = CocoImage(
                int(entry["id"]), folder / entry["file_name"], int(entry["width"]), int(entry["height"])
            )
        if image.width < 1 or image.height < 1:
            raise CocoFormatError(f"{annotation_file}: image {image.image_id} has an empty size")
        if not image.path.is_file():
            raise CocoFormatError(f"{annotation_file}: image {image.image_id}: file {image.path} not found")
        images[image.image_id] = image
    return images


def _add_annotations(
    data: dict, annotation_file: Path, images: dict[int, CocoImage], known: set[int]
) -> dict[str, int]:
    """Append each annotation's (clipped) box to its image; the counts of skipped crowds and clipped boxes."""
    skipped = {"crowd": 0, "clipped": 0}
    for ann in data["annotations"]:
        name = ann.get("id", "?") if isinstance(ann, dict) else repr(ann)
        with _malformed(
            annotation_file, f"annotation {name} needs image_id, category_id and a 4-number bbox"
        ):
            image_id, category_id = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        if image_id not in images:
            raise CocoFormatError(f"{annotation_file}: annotation {name} refers to unknown image {image_id}")
        if category_id not in known:
            raise CocoFormatError(
                f"{annotation_file}: annotation {name} has unknown category_id {category_id} "
                f"(categories: {sorted(known)})"
            )
        if ann.get("iscrowd", 0):
            skipped["crowd"] += 1
            continue
        image = images[image_id]
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(image.width)), min(y + h, float(image.height))
        if w <= 0 or h <= 0 or x1 <= x0 or y1 <= y0:
            raise CocoFormatError(
                f"{annotation_file}: annotation {name} has an empty box {[x, y, w, h]} "
                f"for image {image_id} of size {image.width}x{image.height}"
            )
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            skipped["clipped"] += 1
        image.boxes_xywh.append([x0, y0, x1 - x0, y1 - y0])
        image.category_ids.append(category_id)
    return skipped
