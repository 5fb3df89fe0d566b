"""Reference values of ``torchvision.ops.roi_align`` for the torchvision-free ROI-align in ``visionports.utils``.

    REFERENCE_VENV/bin/python tools/roi_align_reference/make_roi_align_cases.py OUT_DIR

``REFERENCE_VENV`` is a separate environment with torch and torchvision (never the project's .venv, which has no
torchvision). Writes ``OUT_DIR/cases.safetensors`` and ``OUT_DIR/case.json``. Each case pools random features
(float32 and float64) with boxes that SAM3's geometry encoder produces (normalised boxes scaled to the feature
map: inside, touching the borders, partly or wholly outside, thinner than a pixel, empty) and, for the general
rule, fixed sampling ratios and ``aligned=True``. The draw is seeded: two runs write identical files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file
from torchvision.ops import roi_align

# (name, feature shape [N, C, H, W], output size, sampling ratio, aligned)
CASES = [
    ("sam3_square", (2, 6, 18, 18), 7, -1, False),
    ("sam3_map72", (1, 4, 72, 72), 7, -1, False),
    ("non_square_out", (2, 3, 9, 13), (3, 5), -1, False),
    ("ratio2", (2, 3, 16, 12), 4, 2, False),
    ("aligned", (2, 3, 16, 12), 7, -1, True),
]


def boxes_for(height: int, width: int, batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Per image: random boxes inside the map plus the edge cases, in pixels of the feature map (x1, y1, x2, y2)."""
    per_image = []
    for _ in range(batch):
        count = 6
        xy = torch.rand(count, 2, generator=generator, dtype=torch.float64) * torch.tensor([width, height])
        wh = torch.rand(count, 2, generator=generator, dtype=torch.float64) * torch.tensor([width, height])
        random = torch.cat([xy, xy + wh], dim=1).clamp(max=torch.tensor([width, height, width, height]))
        edges = torch.tensor(
            [
                [0.0, 0.0, width, height],  # the whole map
                [width - 0.3, height - 0.3, width, height],  # thinner than a pixel, at the far corner
                [-3.0, -2.0, 4.5, 5.5],  # partly outside, before the first row and column
                [width * 0.5, height * 0.5, width * 1.8, height * 1.6],  # partly past the last row and column
                [-8.0, -8.0, -2.0, -1.5],  # wholly outside: every sample reads zero
                [2.25, 3.75, 2.25, 3.75],  # empty
                [0.5, 0.5, 1.2, width - 0.5],  # one pixel wide, whole height
            ],
            dtype=torch.float64,
        )
        per_image.append(torch.cat([random, edges]))
    return per_image


def main(out_dir: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    meta = {
        "generator": "tools/roi_align_reference/make_roi_align_cases.py",
        "reference": f"torchvision {torchvision.__version__} (torch {torch.__version__}) torchvision.ops.roi_align",
        "cases": {},
    }
    for name, shape, output_size, ratio, aligned in CASES:
        features = torch.randn(*shape, generator=generator, dtype=torch.float64)
        boxes = boxes_for(shape[2], shape[3], shape[0], generator)
        tensors[f"{name}.features"] = features
        for index, per_image in enumerate(boxes):
            tensors[f"{name}.boxes.{index}"] = per_image
        for dtype, tag in ((torch.float32, "float32"), (torch.float64, "float64")):
            out = roi_align(
                features.to(dtype), [b.to(dtype) for b in boxes], output_size, 1.0, ratio, aligned
            )
            tensors[f"{name}.output.{tag}"] = out
        # the same boxes as [K, 5] rows with a spatial scale of 0.5 on doubled coordinates
        rows = torch.cat([torch.cat([torch.full((len(b), 1), float(i), dtype=b.dtype), b * 2], 1)
                          for i, b in enumerate(boxes)])  # fmt: skip
        tensors[f"{name}.rows"] = rows
        tensors[f"{name}.rows_output.float32"] = roi_align(features.float(), rows.float(), output_size, 0.5, ratio,
                                                           aligned)  # fmt: skip
        meta["cases"][name] = {
            "feature_shape": list(shape),
            "output_size": output_size if isinstance(output_size, int) else list(output_size),
            "sampling_ratio": ratio,
            "aligned": aligned,
            "images": shape[0],
            "boxes_per_image": [len(b) for b in boxes],
            "tolerance": {"float64": 1e-12, "float32": 1e-6},
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_dir / "cases.safetensors"))
    (out_dir / "case.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
