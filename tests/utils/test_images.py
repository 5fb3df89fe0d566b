from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionports.utils.images import ImageInputError, collect_image_files, open_image


def test_open_image_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageInputError, match="notes.txt: not an image file"):
        open_image(tmp_path / "notes.txt")
    with pytest.raises(ImageInputError, match="cut.png: truncated or corrupt"):
        open_image(tmp_path / "cut.png")
    with pytest.raises(ImageInputError, match="absent.png: no such image file"):
        open_image(tmp_path / "absent.png")
    assert open_image(tmp_path / "ok.png").mode == "RGB"


def test_collect_image_files(tmp_path: Path) -> None:
    for name in ("b.png", "a.JPG", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in collect_image_files([tmp_path])] == ["a.JPG", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageInputError, match="folder holds no image files"):
        collect_image_files([empty])
    with pytest.raises(ImageInputError, match="no such file or folder"):
        collect_image_files([tmp_path / "nope"])
