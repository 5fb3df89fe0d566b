"""The one hierarchy of errors visionports raises about what it is given.

Every class derives from :class:`VisionportsError`, so a caller — the CLI among them — catches them all in one
place; each also keeps a built-in base (``ValueError``, ``OSError``, ...), so existing ``except`` clauses still
work. Messages name the argument or file and say what was expected. (``IncompleteCheckpointError``, which
carries a load report, lives in :mod:`visionports.core.load_report`.) The modules that raise them re-export
them under their old import paths.
"""

from __future__ import annotations


class VisionportsError(Exception):
    """Base of every error about an input, a file or a folder given to visionports."""


class ModelFolderError(VisionportsError, ValueError):
    """A ``--model`` folder that holds no model, or one of a family the command does not take."""


class OutputFolderError(VisionportsError, OSError):
    """An output folder that cannot be written or replaced safely (busy, protected, or the write failed)."""


class UnsupportedTaskError(VisionportsError, LookupError):
    """A transformers task (pipeline) a family's models do not serve; the message names what does.

    A ``LookupError``, not a ``ValueError``: transformers' pipeline loader catches the latter and would go on to
    try an upstream class of the same name, silently building it with missing weights.
    """


class CheckpointError(VisionportsError, ValueError):
    """A checkpoint file cannot be read or does not hold what was expected."""


class ImageInputError(VisionportsError, ValueError):
    """An input cannot be used as an image; the message names it and says what was expected."""


class MissingExtraError(VisionportsError, ImportError):
    """An optional dependency a command needs is not installed; the message says which extra to install."""


class CocoFormatError(VisionportsError, ValueError):
    """A COCO annotation file that cannot be used as is; the message names the file and the entry."""


class VideoDatasetFormatError(VisionportsError, ValueError):
    """A YouTube-VIS (or OVIS) video annotation file or folder that cannot be used as is; names the entry."""


class NonFiniteOutputError(VisionportsError, RuntimeError):
    """Model outputs holding NaN or infinity: detections from them would be silently empty or wrong."""
