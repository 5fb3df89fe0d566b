"""The CLIP byte-level BPE tokenizer exactly as SAM3-LiteText's text encoder uses it.

Differences from transformers' ``CLIPTokenizer`` that change ids (all reproduced here): prompts are cleaned
with ftfy and HTML-unescaped twice, the literal strings ``<start_of_text>`` / ``<end_of_text>`` are the special
ids 49406 / 49407, and sequences are padded with id **0** (which the text encoder attends to).

The vocabulary ships with the package; a model folder holds only ``tokenizer_config.json`` (the class name and
``context_length``), written by :meth:`Sam3LiteTextTokenizer.save_pretrained` and read by ``from_pretrained``.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import ftfy
import regex
import torch

SOT, EOT = "<start_of_text>", "<end_of_text>"
PAD_ID = 0
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
logger = logging.getLogger("visionports.sam3_lite_text")
_PATTERN = regex.compile(
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)


def _byte_symbols() -> tuple[dict[int, str], list[int]]:
    """Printable stand-in character for every byte, and the byte order of the vocabulary."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in printable]
    symbol = {b: chr(b) for b in printable}
    symbol.update({b: chr(256 + n) for n, b in enumerate(others)})
    return symbol, printable + others


@lru_cache(maxsize=1)
def _vocabulary() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    data = resources.files("visionports.assets").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbol, order = _byte_symbols()
    tokens = [symbol[b] for b in order]
    tokens += [t + "</w>" for t in tokens] + ["".join(m) for m in merges] + [SOT, EOT]
    return {t: i for i, t in enumerate(tokens)}, {m: rank for rank, m in enumerate(merges)}


def clean_prompt(text: str) -> str:
    """ftfy fix, HTML-unescape twice, collapse whitespace, lower-case (the original's 'lower' cleaning)."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class Sam3LiteTextTokenizer:
    """Prompts -> ``input_ids`` [B, context_length] (SOT + BPE + EOT, truncated with EOT kept, zero-padded)."""

    def __init__(self, context_length: int = 16):
        if context_length < 2:
            raise ValueError(
                f"context_length must be at least 2 (start and end tokens), got {context_length}"
            )
        self.context_length = context_length
        self.encoder, self.ranks = _vocabulary()
        self.symbol, _ = _byte_symbols()
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self._cache: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str]:
        """Write ``tokenizer_config.json`` (class name, ``context_length``) into ``save_directory``; the
        transformers saving options in ``kwargs`` are accepted and ignored (there are no vocabulary files)."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / TOKENIZER_CONFIG_NAME
        settings = {"tokenizer_class": type(self).__name__, "context_length": self.context_length}
        path.write_text(json.dumps(settings, indent=2) + "\n")
        return (str(path),)

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, *args: Any, context_length: int | None = None, **kwargs: Any
    ) -> Sam3LiteTextTokenizer:
        """The tokenizer saved in a local ``folder`` (``context_length`` overrides the saved one). Loader
        options ``AutoTokenizer`` passes on (``kwargs``) are ignored: the vocabulary ships with the package."""
        path = Path(folder) / TOKENIZER_CONFIG_NAME
        if not path.is_file():
            raise OSError(
                f"{folder}: no {TOKENIZER_CONFIG_NAME} (save it with Sam3LiteTextTokenizer.save_pretrained)"
            )
        settings = json.loads(path.read_text())
        if settings.get("tokenizer_class", cls.__name__) != cls.__name__:
            raise ValueError(
                f"{path}: tokenizer_class is {settings['tokenizer_class']!r}, not {cls.__name__!r}"
            )
        return cls(int(settings["context_length"]) if context_length is None else int(context_length))

    def _merge(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts[:-1], parts[1:], strict=True)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def bpe_ids(self, text: str) -> list[int]:
        """BPE ids of one cleaned prompt, without start/end tokens."""
        ids = []
        for piece in _PATTERN.findall(clean_prompt(text)):
            word = piece if piece in (SOT, EOT) else "".join(self.symbol[b] for b in piece.encode("utf-8"))
            ids += [self.encoder[t] for t in self._merge(word)]
        return ids

    def encode(self, text: str) -> tuple[list[int], bool]:
        """Ids of one prompt (length ``context_length``) and whether it was truncated."""
        if not isinstance(text, str):
            raise TypeError(f"a prompt must be a string, got {type(text).__name__}")
        ids = [self.sot_id, *self.bpe_ids(text), self.eot_id]
        truncated = len(ids) > self.context_length
        if truncated:
            ids = ids[: self.context_length]
            ids[-1] = self.eot_id
        return ids + [PAD_ID] * (self.context_length - len(ids)), truncated

    def __call__(
        self, prompts: str | list[str], return_tensors: str | None = "pt"
    ) -> dict[str, torch.Tensor]:
        """``input_ids`` [B, ctx] int64 and ``attention_mask`` (1 = token, 0 = padding) for the detector.

        Always fixed-length torch tensors (the context length): ``return_tensors`` is accepted as transformers'
        tokenizers take it, and only ``"pt"`` (or ``None``) is possible.
        """
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors: only 'pt' is supported, got {return_tensors!r}")
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        if not batch:
            raise ValueError("prompts: got an empty list")
        rows = []
        for prompt in batch:
            row, truncated = self.encode(prompt)
            if truncated:
                logger.warning(
                    "prompt %r is longer than %d tokens: truncated (end token kept), as the original model does",
                    prompt[:60],
                    self.context_length,
                )
            rows.append(row)
        ids = torch.tensor(rows, dtype=torch.int64)
        return {"input_ids": ids, "attention_mask": (ids != PAD_ID).long()}
