"""The ``visionports`` command: one module per verb, one grammar.

``visionports VERB [INPUTS] --model DIR [OPTIONS]``: the family is read from the model folder's config, so only
``convert FAMILY CHECKPOINT OUTPUT_DIR`` names one (``parity`` reads it from the case's ``<family>/<case>``
folder). Every verb reports a bad input as one ``Error:`` line with exit status 1.
"""

from __future__ import annotations

from .common import main
from .convert import convert
from .detect import detect
from .evaluate import evaluate
from .export import export
from .parity import parity, parity_packed
from .segment import segment
from .segment_video import segment_video
from .train import train

for _command in (convert, parity, parity_packed, detect, segment, segment_video, evaluate, train, export):
    main.add_command(_command)

__all__ = ["main"]
