"""Fine-tune DEIMv2-Atto on the synthetic shapes data set on CPU and print COCO AP before/after.

    python benchmarks/deimv2_finetune.py [--train 512] [--val 64] [--size 192] [--epochs 14] [--start FOLDER]
                                         [--augment none|flip|recipe]

Without ``--start`` the detector starts from the original recipe's initialisation (no pretrained weights
are reachable offline); with it, from a converted folder (e.g. a released Atto checkpoint). Everything
goes through the public entry points: ``make_synthetic_coco``, ``fine_tune`` (= ``visionports train``) and
``evaluate_folder`` (= ``visionports evaluate``). ``--augment`` picks the training augmentation (as ``visionports
train --augment``): run it once with ``flip`` and once with ``recipe`` to compare the full data recipe with flips
only at the same budget.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from visionports.data.coco_dataset import load_coco_split
from visionports.data.coco_evaluation import coco_ap, evaluate_folder, format_metrics, predict_split
from visionports.data.synthetic_coco import make_synthetic_coco
from visionports.models.deimv2 import Deimv2Config, Deimv2ForObjectDetection, Deimv2ImageProcessor
from visionports.models.deimv2.train_deimv2 import FineTuneOptions, fine_tune, load_for_data


def initial_folder(root: Path, size: int, seed: int) -> Path:
    """Atto with the recipe's initialisation and a processor at ``size``."""
    torch.manual_seed(seed)
    model = Deimv2ForObjectDetection(Deimv2Config.from_preset("atto"))
    folder = root / "atto-init"
    model.save_pretrained(folder)
    Deimv2ImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=512, help="training images")
    parser.add_argument("--val", type=int, default=64, help="validation images")
    parser.add_argument("--size", type=int, default=192, help="image size (multiple of 32)")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="base learning rate [Atto recipe 2e-3]")
    parser.add_argument("--start", type=Path, default=None, help="converted detector folder to start from")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--augment", choices=("none", "flip", "recipe"), default="none",
        help="training augmentation: none (the figures in the docs), flips only, or the Atto data recipe",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_synthetic_coco(
            root / "shapes", args.train, args.val, (args.size, args.size), 3, args.seed
        )
        start = args.start or initial_folder(root, args.size, args.seed)
        began = time.perf_counter()
        options = FineTuneOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                  augment=args.augment)  # fmt: skip
        summary = fine_tune(start, data, root / "tuned", options)
        seconds = time.perf_counter() - began
        # "before": the same start with its heads sized to the data set, as fine_tune loads it
        val = load_coco_split(data, "val")
        torch.manual_seed(args.seed)
        model, processor = load_for_data(start, load_coco_split(data, "train"))
        before = coco_ap(val, predict_split(model.eval(), processor, val, args.batch_size, progress=False))
        after = evaluate_folder(root / "tuned", data, "val", batch_size=args.batch_size, progress=False)

    print(f"\nDEIMv2-Atto fine-tuning on synthetic shapes: {args.train} train / {args.val} val images at "
          f"{args.size}x{args.size}, {summary['steps']} steps ({args.epochs} epochs, batch {args.batch_size}, "
          f"augment {args.augment}), "
          f"{seconds / 60:.1f} min on {torch.get_num_threads()} CPU threads")  # fmt: skip
    print(f"{'metric':<10} {'before':>7} {'after':>7}")
    for line_before, line_after in zip(
        format_metrics(before).splitlines(), format_metrics(after).splitlines(), strict=True
    ):
        name, value = line_before.split()
        print(f"{name:<10} {value:>7} {line_after.split()[1]:>7}")
    if args.json:
        args.json.write_text(
            json.dumps({"before": before, "after": after, "minutes": seconds / 60, **summary})
        )


if __name__ == "__main__":
    main()
