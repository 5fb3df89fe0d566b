"""Batch inference with Ray Data: the inputs cut into shards, each shard run by one actor of a pool (the model
loaded once per actor), its records written as one file; finished shards are kept when a job is re-run.

``pip install 'visionports[distributed]'``. Every node needs the package and the model folder at the same
path (or a shared file system); inputs and output may be URLs fsspec reads and writes (``s3://...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ImageInputError, MissingExtraError
from ..core.files import output_lock, require_family_folder
from ..tasks.runner import LOCK_NAME, ImageTask, progress_bar, unique_names
from .shards import ShardPlan, ShardStore
from .sources import VIDEO_SUFFIXES, expand_inputs, is_url, open_input_image


@dataclass
class RayOptions:
    """How a job runs on Ray. ``address``: None starts a Ray instance on this machine, ``auto`` joins the
    cluster this machine belongs to, ``ray://HOST:10001`` a remote one (Ray Client)."""

    address: str | None = None
    actors: int = 2  # model replicas (one per GPU with gpus_per_actor=1)
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch_size: int = 4  # images per model call
    shard_size: int = 256  # images per result file (the unit of resumption)
    results_format: str = "jsonl"  # or parquet
    pictures: bool = False  # also write the annotated pictures (pictures/<name>.png)

    def check(self) -> None:
        for name in ("actors", "batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            raise ValueError("--cpus-per-actor must be positive and --gpus-per-actor not negative")


@dataclass
class DistributedRun:
    output: str
    shards: int  # in the request
    resumed: int  # finished by an earlier run and kept
    records: int  # written by this run
    errors: int  # inputs of this run that could not be read (their records hold the error)


def run_image_task_on_ray(
    task: ImageTask,
    inputs: Sequence[str | Path],
    model_dir: str | Path,
    output: str | Path,
    options: RayOptions | None = None,
    progress: bool = True,
) -> DistributedRun:
    """Run an image task (detect, segment) over ``inputs`` on a Ray cluster; sharded records in ``output``.

    Each record: ``input``, ``name``, ``width``, ``height``, ``outputs`` (the task's entries, boxes also as
    COCO ``bbox`` [x, y, w, h], masks as COCO RLE), ``error`` (an input that could not be read; the job goes
    on), ``task``, ``model``, ``settings`` and the package ``version``.
    """
    options = options or RayOptions()
    options.check()
    files = expand_inputs(inputs)
    model_dir, _ = require_family_folder(model_dir, task.name)
    worker = {
        "task": task,
        "model_dir": str(model_dir),
        "header": _header(task.name, task.settings, model_dir),
    }
    return _run_shards(_ShardWorker, worker, files, output, options, options.shard_size, task.name, progress)


def run_videos_on_ray(
    videos: Sequence[str | Path],
    model_dir: str | Path,
    output: str | Path,
    options: RayOptions | None = None,
    progress: bool = True,
    **settings: Any,
) -> DistributedRun:
    """``segment-video`` over many videos on a Ray cluster, one video per shard: ``videos/<name>.mp4`` and its
    results as the shard's record (``input``, ``name``, ``video``, ``results``: the JSON of a local run,
    ``error``, ``task``, ``model``, ``settings``, ``version``). ``settings``: ``segment_video``'s options."""
    from ..utils.video import require_av

    require_av()
    options = options or RayOptions()
    options.check()
    files = expand_inputs(videos, VIDEO_SUFFIXES)
    model_dir, _ = require_family_folder(model_dir, "segment-video")
    worker = {"model_dir": str(model_dir), "header": _header("segment-video", settings, model_dir),
              "settings": settings}  # fmt: skip
    return _run_shards(_VideoWorker, worker, files, output, options, 1, "segment-video", progress)


def _run_shards(worker: type, arguments: dict, inputs: list[str], output: str | Path, options: RayOptions,
                shard_size: int, desc: str, progress: bool) -> DistributedRun:  # fmt: skip
    """Plan the shards of ``inputs`` in ``output`` and run the missing ones with a pool of ``worker`` actors."""
    ray = _ray()
    store = ShardStore(output, options.results_format)
    plan = ShardPlan(arguments["header"] | {"format": options.results_format}, inputs,
                     unique_names([Path(f) for f in inputs]), shard_size)  # fmt: skip
    local = not is_url(str(output))
    records = errors = 0
    with output_lock(Path(output), Path(output) / LOCK_NAME) if local else nullcontext():
        todo = store.start(plan)
        if todo:
            _connect(ray, options.address)
            rows = [{"shard": i, "inputs": plan.shard(i)[0], "names": plan.shard(i)[1]} for i in todo]
            dataset = ray.data.from_items(rows).map_batches(
                worker,
                fn_constructor_kwargs={**arguments, "output": store.output, "options": options},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=options.actors),
                num_cpus=options.cpus_per_actor,
                num_gpus=options.gpus_per_actor,
            )
            with progress_bar(len(todo), desc, "shard", progress) as bar:
                for done in dataset.iter_rows():
                    records, errors = records + int(done["records"]), errors + int(done["errors"])
                    bar.update()
    return DistributedRun(store.output, plan.count, plan.count - len(todo), records, errors)


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingExtraError("--ray needs Ray Data: pip install 'visionports[distributed]'") from None
    return ray


def _connect(ray, address: str | None) -> None:
    """Join (or start) the cluster once per process; Ray Data's own progress bars off (ours is shown)."""
    import logging

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _header(task: str, settings: dict, model_dir: Path) -> dict[str, Any]:
    from .. import __version__

    return {"task": task, "model": str(model_dir), "settings": settings, "version": __version__}


def with_coco_boxes(entries: list[dict]) -> list[dict]:
    """Entries with their ``box`` (x0, y0, x1, y1) also as COCO ``bbox`` (x, y, width, height)."""
    out = []
    for entry in entries:
        box = entry.get("box")
        if isinstance(box, list) and len(box) == 4:
            entry = {**entry, "bbox": [round(box[0], 2), round(box[1], 2), round(box[2] - box[0], 2),
                                       round(box[3] - box[1], 2)]}  # fmt: skip
        out.append(entry)
    return out


class _Worker:
    """One actor: each call runs whole shards (``_shard``) and writes their files."""

    def __init__(self, output: str, options: RayOptions, header: dict) -> None:
        self.options, self.header = options, header
        self.store = ShardStore(output, options.results_format)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        counts: dict[str, list[int]] = {"shard": [], "records": [], "errors": []}
        for index, inputs, names in zip(batch["shard"], batch["inputs"], batch["names"], strict=True):
            records = self._shard([str(i) for i in inputs], [str(n) for n in names])
            self.store.write_shard(int(index), records)
            counts["shard"].append(int(index))
            counts["records"].append(len(records))
            counts["errors"].append(sum(r["error"] is not None for r in records))
        return {key: np.asarray(value) for key, value in counts.items()}

    def _shard(self, inputs: list[str], names: list[str]) -> list[dict]:
        raise NotImplementedError


class _ShardWorker(_Worker):
    """An image task's actor: the model loaded once, shards run in batches of ``batch_size``."""

    def __init__(
        self, task: ImageTask, model_dir: str, output: str, options: RayOptions, header: dict
    ) -> None:
        super().__init__(output, options, header)
        self.task = task
        self.predict = task.load(Path(model_dir))

    def _shard(self, inputs: list[str], names: list[str]) -> list[dict]:
        size = self.options.batch_size
        return [record for start in range(0, len(inputs), size)
                for record in self._batch(inputs[start : start + size], names[start : start + size])]  # fmt: skip

    def _batch(self, inputs: list[str], names: list[str]) -> list[dict]:
        images, failed = {}, {}
        for uri in inputs:
            try:
                images[uri] = open_input_image(uri)
            except ImageInputError as err:
                failed[uri] = str(err)
        readable = [uri for uri in inputs if uri in images]
        results = dict(
            zip(readable, self.predict([images[u] for u in readable]) if readable else [], strict=True)
        )
        records = []
        for uri, name in zip(inputs, names, strict=True):
            image = images.get(uri)
            if image is not None and self.options.pictures:
                self._picture(name, self.task.render(image, results[uri]))
            outputs = with_coco_boxes(self.task.to_json(results[uri])) if image is not None else []
            records.append({"input": uri, "name": name, "width": image.width if image else None,
                            "height": image.height if image else None, "outputs": outputs,
                            "error": failed.get(uri), **self.header})  # fmt: skip
        return records

    def _picture(self, name: str, picture) -> None:
        import io

        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        self.store.write_bytes(self.store.path("pictures", f"{name}.png"), buffer.getvalue())


class _VideoWorker(_Worker):
    """A ``segment-video`` actor: each shard is one video, segmented to a local file, then stored."""

    def __init__(
        self, model_dir: str, output: str, options: RayOptions, header: dict, settings: dict
    ) -> None:
        super().__init__(output, options, header)
        self.model_dir, self.settings = model_dir, settings

    def _shard(self, inputs: list[str], names: list[str]) -> list[dict]:
        import json
        import tempfile

        from ..core.errors import VisionportsError
        from ..tasks.segment_video import segment_video

        (source,), (name,) = inputs, names
        record = {
            "input": source,
            "name": name,
            "video": f"videos/{name}.mp4",
            "results": None,
            "error": None,
        }
        with tempfile.TemporaryDirectory() as tmp:
            video, results = Path(tmp) / f"{name}.mp4", Path(tmp) / f"{name}.json"
            try:
                segment_video(
                    source, self.model_dir, video, json_path=results, progress=False, **self.settings
                )
            except (VisionportsError, OSError, ValueError) as err:
                return [{**record, "video": None, "error": f"{type(err).__name__}: {err}", **self.header}]
            self.store.write_bytes(self.store.path("videos", f"{name}.mp4"), video.read_bytes())
            record["results"] = json.loads(results.read_text())
        return [{**record, **self.header}]
