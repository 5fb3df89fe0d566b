"""The ``visionports`` command: one module per verb, one grammar.

``visionports VERB [INPUTS] --model DIR [OPTIONS]``: the family is read from the model folder's config, so only
``convert FAMILY CHECKPOINT OUTPUT_DIR`` names one (``parity`` reads it from the case's ``<family>/<case>``
folder). Every verb reports a bad input as one ``Error:`` line with exit status 1. Verb modules are imported
when their verb runs (``visionports --help`` loads none).
"""

from __future__ import annotations

from .common import main

main.lazy_commands = {  # verb -> (module, function, short help shown by `visionports --help`)
    "convert": (
        "visionports.cli.convert",
        "convert",
        "Convert an original CHECKPOINT of FAMILY into a from_pretrained folder OUTPUT_DIR.",
    ),
    "detect": (
        "visionports.cli.detect",
        "detect",
        "Detect objects in IMAGES (files or folders; with --ray also globs, manifest files and URLs); write "
        "annotated pictures and JSON results.",
    ),
    "evaluate": (
        "visionports.cli.evaluate",
        "evaluate",
        "Print the metrics table of the model in --model on --data: COCO box AP (DEIMv2); YouTube-VIS / OVIS AP, "
        "VIPSeg VPQ and STQ, or VSPW mIoU by the model's task (VidEoMT).",
    ),
    "export": (
        "visionports.cli.export",
        "export",
        "Export the detector in --model to an ONNX graph at --output.",
    ),
    "parity": (
        "visionports.cli.parity",
        "parity",
        "Check the port against a golden CASE_DIR of the original implementation (exit 0 only on parity).",
    ),
    "parity-packed": (
        "visionports.cli.parity",
        "parity_packed",
        "Check the packed encoder of --model against the standard model, image by image (exit 0 on parity).",
    ),
    "segment": (
        "visionports.cli.segment",
        "segment",
        "Segment what the --prompt texts describe in IMAGES (files or folders; with --ray also globs, manifest "
        "files and URLs).",
    ),
    "segment-video": (
        "visionports.cli.segment_video",
        "segment_video",
        "Segment VIDEO (or --frames-dir) online and write it with coloured masks, track ids and labels.",
    ),
    "train": (
        "visionports.cli.train",
        "train",
        "Fine-tune the model in --model (DEIMv2: transformers Trainer, EMA, the original recipe; VidEoMT: the "
        "original's clip sampling, loss, layer-wise decay and two-stage schedule).",
    ),
}


def load_all_commands() -> dict:
    """Every verb, imported: name -> click command (``main.commands`` once this has run)."""
    for name in main.list_commands(None):  # type: ignore[arg-type]
        main.get_command(None, name)  # type: ignore[arg-type]
    return main.commands


__all__ = ["load_all_commands", "main"]
