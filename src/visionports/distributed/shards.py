"""Sharded, resumable results of a distributed run: ``plan.json``, ``shards/part-NNNNN.{jsonl,parquet}``.

A shard's file appears at once when it is complete (written beside, then moved), so a killed job leaves
only complete shards; a re-run of the same request (same inputs, model and settings) redoes only the
missing ones. The output may be a local folder or any URL fsspec writes (``s3://bucket/run``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import OutputFolderError

FORMATS = ("jsonl", "parquet")


@dataclass
class ShardPlan:
    """What a run was asked: inputs cut into shards of ``shard_size`` and their output picture names."""

    request: dict[str, Any]  # task, model, settings, format: what must match for a resume
    inputs: list[str]
    names: list[str]
    shard_size: int

    @property
    def count(self) -> int:
        return -(-len(self.inputs) // self.shard_size)

    def shard(self, index: int) -> tuple[list[str], list[str]]:
        """The inputs of shard ``index`` and their picture names."""
        window = slice(index * self.shard_size, (index + 1) * self.shard_size)
        return self.inputs[window], self.names[window]

    def to_json(self) -> dict:
        return {**self.request, "shard_size": self.shard_size, "shards": self.count,
                "inputs": self.inputs, "names": self.names}  # fmt: skip


class ShardStore:
    """The output folder (local or an fsspec URL) of one request: its plan, finished shards and pictures."""

    def __init__(self, output: str | Path, fmt: str) -> None:
        import fsspec

        if fmt not in FORMATS:
            raise ValueError(f"--results-format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        self.output, self.format = str(output), fmt
        self.fs, self.root = fsspec.core.url_to_fs(self.output)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def shard_path(self, index: int) -> str:
        return self.path("shards", f"part-{index:05d}.{self.format}")

    def start(self, plan: ShardPlan) -> list[int]:
        """Write the plan, or check it equals an earlier one (a resume); the shards still to do."""
        wanted = plan.to_json()
        if self.fs.exists(self.path("plan.json")):
            with self.fs.open(self.path("plan.json"), "r") as handle:
                earlier = json.load(handle)
            if earlier != wanted:
                changed = _changed(earlier, wanted)
                raise OutputFolderError(f"--output {self.output}: holds the results of another request (differs in "
                                        f"{', '.join(changed)}); choose another --output")  # fmt: skip
        else:
            self.fs.makedirs(self.path("shards"), exist_ok=True)
            self.write_bytes(self.path("plan.json"), json.dumps(wanted, indent=1).encode())
        return [i for i in range(plan.count) if not self.fs.exists(self.shard_path(i))]

    def write_bytes(self, path: str, data: bytes) -> None:
        """``data`` at ``path``, appearing at once (a uniquely named sibling, then moved)."""
        parent, name = path.rsplit("/", 1)
        self.fs.makedirs(parent, exist_ok=True)
        partial = f"{parent}/.{name}.{uuid.uuid4().hex}.partial"
        try:
            with self.fs.open(partial, "wb") as handle:
                handle.write(data)
            self.fs.mv(partial, path)
        finally:
            if self.fs.exists(partial):
                self.fs.rm(partial)

    def write_shard(self, index: int, records: Sequence[dict]) -> None:
        self.write_bytes(self.shard_path(index), encode_records(records, self.format))

    def read(self) -> list[dict]:
        """Every record of the finished shards, in input order."""
        records = []
        for file in sorted(self.fs.glob(self.path("shards", f"part-*.{self.format}"))):
            with self.fs.open(file, "rb") as handle:
                records += decode_records(handle.read(), self.format)
        return records


def encode_records(records: Sequence[dict], fmt: str) -> bytes:
    """JSON lines, or a Parquet table whose nested fields (``outputs``, ``settings``, ``results``) are JSON text
    columns and the others strings or integers (one schema for every shard, whatever its outputs hold)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records).encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{k: json.dumps(v) if k in _NESTED else v for k, v in r.items()} for r in records]
    schema = pa.schema([(key, pa.int32() if key in _INTEGERS else pa.string()) for key in records[0]])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    return sink.getvalue().to_pybytes()


def decode_records(data: bytes, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode().splitlines() if line]
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(pa.BufferReader(data)).to_pylist()
    return [{k: json.loads(v) if k in _NESTED and v is not None else v for k, v in r.items()} for r in rows]


_NESTED = ("outputs", "settings", "results")  # JSON text columns in Parquet
_INTEGERS = ("width", "height")


def _changed(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ (``settings.threshold`` for nested ones)."""
    keys = []
    for key in sorted({*old, *new}):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(prefix + key)
    return keys
