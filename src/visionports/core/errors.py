"""The base of every error visionports raises about what it is given.

``CheckpointError`` / ``IncompleteCheckpointError`` (core), ``ImageInputError`` (utils.images) and
``CocoFormatError`` (data) derive from :class:`VisionportsError`, so a caller — the CLI among them — catches
them all in one place; each keeps its built-in base (``ValueError``, ``RuntimeError``), so existing ``except``
clauses still work. Messages name the argument or file and say what was expected.
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
