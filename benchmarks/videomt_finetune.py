"""Fine-tune a small VidEoMT on the synthetic moving-shapes videos on CPU and print YouTube-VIS AP before/after.

    python benchmarks/videomt_finetune.py [--train 64] [--val 16] [--frames 8] [--epochs 60] [--lr 5e-4] [--start FOLDER]

Without ``--start`` the model is a small randomly initialised DINOv2-style VidEoMT (no pretrained weights are
reachable offline); with it, from a converted folder. Everything goes through the public entry points:
``make_synthetic_ytvis``, ``fine_tune_video`` (= ``visionports train``) and ``evaluate_video_folder``
(= ``visionports evaluate``). "Before" is the same start with its class head sized to the data set, as
fine-tuning loads it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from visionports.data.synthetic_videos import make_synthetic_ytvis
from visionports.data.video_evaluation import evaluate_video_folder, format_video_metrics
from visionports.data.ytvis import load_ytvis_split
from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation
from visionports.models.videomt.family import make_processor
from visionports.models.videomt.train_options_videomt import VideoFineTuneOptions
from visionports.models.videomt.train_videomt import load_for_data
from visionports.training.video_fine_tuning import fine_tune_video

SMALL = dict(hidden_size=192, num_hidden_layers=6, num_attention_heads=3, intermediate_size=768,
             segmenter_blocks=[4, 5], num_queries=20, position_grid_size=8, max_num_instances=10)  # fmt: skip


def initial_folder(root: Path, short_side: int, seed: int, num_points: int) -> Path:
    """A small VidEoMT with random weights, its processor evaluating at the data's own frame size."""
    torch.manual_seed(seed)
    config = VideomtConfig(
        **SMALL, min_size_test=short_side, train_num_points=num_points, id2label={0: "object"}
    )
    folder = root / "videomt-init"
    VideomtForUniversalSegmentation(config).save_pretrained(folder)
    make_processor(config).save_pretrained(folder)
    return folder


def before_folder(start: Path, data: Path, root: Path, seed: int) -> Path:
    """The start as fine-tuning loads it (class head re-initialised for the data set), saved for evaluation."""
    split = load_ytvis_split(data, "train")
    torch.manual_seed(seed)
    model, processor = load_for_data(start, split.category_ids, split.category_names)
    folder = root / "before"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=64, help="training videos")
    parser.add_argument("--val", type=int, default=16, help="validation videos")
    parser.add_argument("--frames", type=int, default=8, help="frames per video")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=4, help="clips per step")
    parser.add_argument(
        "--lr",
        type=float,
        default=5e-4,
        help="base learning rate (the recipe's 1e-4 assumes a pretrained start)",
    )
    parser.add_argument("--size-scale", type=float, default=0.2, help="scale of the recipe's training sizes")
    parser.add_argument(
        "--num-points",
        type=int,
        default=1024,
        help="points of the mask losses and matching of the initial model [recipe 12544]",
    )
    parser.add_argument("--start", type=Path, default=None, help="converted VidEoMT folder to start from")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_synthetic_ytvis(root / "videos", args.train, args.val, frames=args.frames,
                                    size=(args.height, args.width), seed=args.seed)  # fmt: skip
        start = args.start or initial_folder(root, min(args.height, args.width), args.seed, args.num_points)
        before = evaluate_video_folder(
            before_folder(start, data, root, args.seed), data, "valid", progress=False
        )
        began = time.perf_counter()
        options = VideoFineTuneOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                       size_scale=args.size_scale, seed=args.seed)  # fmt: skip
        summary = fine_tune_video(start, data, root / "tuned", options)
        seconds = time.perf_counter() - began
        after = evaluate_video_folder(root / "tuned", data, "valid", progress=False)

    print(f"\nVidEoMT fine-tuning on synthetic moving shapes: {args.train} train / {args.val} val videos of "
          f"{args.frames} frames at {args.height}x{args.width}, {summary['steps']} steps ({args.epochs} epochs, "
          f"{args.batch_size} clips of 5 frames, lr {args.lr}), {seconds / 60:.1f} min on {torch.get_num_threads()} CPU threads")  # fmt: skip
    print(f"{'metric':<10} {'before':>7} {'after':>7}")
    rows = zip(format_video_metrics(before.metrics).splitlines(), format_video_metrics(after.metrics).splitlines(),
               strict=True)  # fmt: skip
    for line_before, line_after in rows:
        name, value = line_before.split()
        print(f"{name:<10} {value:>7} {line_after.split()[1]:>7}")
    if args.json:
        args.json.write_text(
            json.dumps({"before": before.metrics, "after": after.metrics, "minutes": seconds / 60, **summary})
        )


if __name__ == "__main__":
    main()
