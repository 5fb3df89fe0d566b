"""The one skeleton of the CLI tasks: collect inputs, validate them all, lock the output folder, load once,
batch, write atomically.

Every picture gets its own name (``x``, ``x_1``, ... for inputs sharing a stem), so no input overwrites
another's output; the JSON manifest maps each input to its results and its picture. A task may also export its results as a
COCO results file (``<manifest stem>.coco.json``, see :mod:`visionports.data.coco_results`), written once the
run completes from every input's manifest entry (resumed ones too) and removed when a run starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from safetensors import SafetensorError
from tqdm.auto import tqdm

from ..core.errors import ModelFolderError, OutputFolderError, VisionportsError
from ..core.files import atomic_write, output_lock, require_family_folder
from ..utils.images import collect_image_files, open_image

# images of one batch -> one result per image
Predict = Callable[[list[Image.Image]], list[Any]]
# (input path, (width, height), manifest entry) per input, in input order -> a COCO results payload
CocoExport = Callable[[list[tuple[str, tuple[int, int], list[dict]]]], dict]

LOCK_NAME = ".visionports.lock"  # in an output folder while a run writes there
SAVE_EVERY = 2.0  # seconds between manifest saves during a run (rewriting it per batch is quadratic)


@dataclass
class ImageTask:
    """What a task adds to the skeleton: how to load its model, predict, draw and report one result."""

    name: str  # the CLI verb (progress label; the model folder must be of a family taking it)
    load: Callable[[Path], Predict]  # model folder -> batch predictor (called once)
    render: Callable[[Image.Image, Any], Image.Image]  # image, result -> annotated picture
    to_json: Callable[[Any], list[dict]]  # result -> its manifest entry
    manifest: str  # file name of the JSON manifest
    settings: dict[str, Any]  # written into the manifest after the model folder
    keep_results: bool = (
        True  # False: results (e.g. full-size masks) are dropped once written (bounded memory)
    )
    coco: CocoExport | None = None  # also write ``<manifest stem>.coco.json`` when the run completes

    @property
    def coco_name(self) -> str:
        return f"{Path(self.manifest).stem}.coco.json"


@dataclass
class ImageRun:
    results: dict[
        str, Any
    ]  # input path -> result, for the inputs predicted by this run (if the task keeps them)
    pictures: list[Path]  # one per input, in input order
    manifest: Path
    entries: dict[str, list[dict]]  # input path -> its manifest entry, for every input (resumed ones too)
    resumed: int  # inputs finished by an earlier run of the same request and kept
    coco: Path | None = None  # the COCO results file, when the task exports one


def unique_names(files: Sequence[Path]) -> list[str]:
    """Output stems, one per file: the file's stem, suffixed ``_1``, ``_2``, ... when already taken."""
    names: list[str] = []
    taken: set[str] = set()
    for file in files:
        name, count = file.stem, 0
        while name in taken:
            count += 1
            name = f"{file.stem}_{count}"
        taken.add(name)
        names.append(name)
    return names


@contextmanager
def lock_output(folder: Path, lock_path: Path) -> Iterator[None]:
    """Create ``folder`` and hold the output lock on ``lock_path`` (:func:`~visionports.core.files.output_lock`)
    while the block runs; ``OutputFolderError`` when the folder cannot be written or another run holds it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputFolderError(f"--output {folder}: cannot write there ({err.strerror or err})") from err
    with output_lock(folder, lock_path):
        yield


def _fingerprint(file: Path) -> dict[str, int]:
    stat = file.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_manifest(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _own_pictures(payload: dict) -> set[str]:
    """The picture names an earlier manifest planned or finished (plain ``*.png`` names in the folder only)."""
    names = [v.get("picture") for v in _dict(payload.get("asked")).values() if isinstance(v, dict)]
    names += list(_dict(payload.get("pictures")).values())
    return {
        n for n in names if isinstance(n, str) and n.endswith(".png") and Path(n).name == n and n[0] != "."
    }


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


class RunPlan:
    """The manifest of one run: what was asked (inputs, their pictures), what finished, whether it completed."""

    def __init__(self, task: ImageTask, model_dir: Path, output_dir: Path, files: list[Path]) -> None:
        self.task, self.files, self.output_dir = task, files, output_dir
        self.manifest = output_dir / task.manifest
        self.header = {"model": str(model_dir), "visionports_version": package_version(), **task.settings}
        self.asked = {str(f): {"picture": f"{name}.png", **_fingerprint(f)}
                      for f, name in zip(files, unique_names(files), strict=True)}  # fmt: skip
        self.entries: dict[str, list[dict]] = {}
        self.sizes: dict[str, list[int]] = {}  # input path -> [width, height] of finished inputs
        self.results: dict[str, Any] = {}
        self.resumed = 0

    def picture(self, file: Path) -> Path:
        return self.output_dir / self.asked[str(file)]["picture"]

    def start(self) -> list[Path]:
        """Keep what an earlier run of this request finished, remove its other pictures, write the manifest;
        return the files still to do."""
        old = _read_manifest(self.manifest)
        kept = self._kept(old)
        self.entries = {key: old["images"][key] for key in kept}
        old_sizes = _dict(old.get("sizes"))
        self.sizes = {key: old_sizes[key] for key in kept if _is_size(old_sizes.get(key))}
        self.resumed = len(kept)
        (self.output_dir / self.task.coco_name).unlink(missing_ok=True)  # written again when complete
        for name in _own_pictures(old) - {self.asked[key]["picture"] for key in kept}:
            (self.output_dir / name).unlink(missing_ok=True)
        self.save()
        return [f for f in self.files if str(f) not in self.entries]

    def _kept(self, old: dict) -> list[str]:
        """Inputs an earlier run of the same model and settings finished, unchanged, their picture present."""
        if any(old.get(key) != value for key, value in self.header.items()):
            return []
        asked, done, images = _dict(old.get("asked")), _dict(old.get("pictures")), _dict(old.get("images"))
        return [key for key, plan in self.asked.items()
                if asked.get(key) == plan and done.get(key) == plan["picture"] and key in images
                and (self.output_dir / plan["picture"]).is_file()]  # fmt: skip

    def finish(self, file: Path, image: Image.Image, result: Any) -> None:
        self.sizes[str(file)] = list(image.size)
        if self.task.keep_results:
            self.results[str(file)] = result
        self.entries[str(file)] = self.task.to_json(result)

    def save(self, complete: bool = False) -> None:
        """Write the manifest: settings, ``complete``, ``asked`` and, for finished inputs, ``images`` and
        ``pictures`` and ``sizes`` ([width, height]) (in input order)."""
        done = [key for key in self.asked if key in self.entries]
        write_json(self.manifest, {**self.header, "complete": complete, "asked": self.asked,
                                   "images": {key: self.entries[key] for key in done},
                                   "pictures": {key: self.asked[key]["picture"] for key in done},
                                   "sizes": {key: self.sizes[key] for key in done if key in self.sizes}})  # fmt: skip

    def export_coco(self) -> Path | None:
        """Write the task's COCO results file from every input's entry (after a complete run)."""
        if self.task.coco is None:
            return None
        for file in self.files:  # a manifest of an older version has no sizes: read the image
            self.sizes.setdefault(str(file), list(open_image(file).size))
        rows = [(str(f), tuple(self.sizes[str(f)]), self.entries[str(f)]) for f in self.files]
        path = self.output_dir / self.task.coco_name
        write_json(path, self.task.coco(rows))
        return path


def _is_size(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)


def package_version() -> str:
    """The installed ``visionports`` version (written into every manifest and results file)."""
    from .. import __version__

    return __version__


def load_model_folder(model_dir: Path, load: Callable[[Path], Any]) -> Any:
    """``load(folder)`` of a folder already checked to hold the command's family (``require_family_folder``).

    Files that cannot be read (a truncated ``model.safetensors``, a broken JSON) are a ``ModelFolderError``.
    """
    try:
        return load(model_dir)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError, SafetensorError) as err:
        if isinstance(err, VisionportsError):
            raise
        raise ModelFolderError(
            f"--model {model_dir}: cannot load the model ({type(err).__name__}: {err}); convert it again"
        ) from err


def write_json(path: Path, payload: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))


def write_png(path: Path, picture: Image.Image) -> None:
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))


def collect_valid_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files of ``inputs``, each checked to open: nothing is written for a bad input."""
    files = list(dict.fromkeys(collect_image_files(inputs)))  # an input named twice is done once
    for file in files:
        open_image(file)
    return files


def progress_bar(total: int, desc: str, unit: str, enabled: bool) -> tqdm:
    """A progress bar that leaves no line behind, so a later ``Error:`` line starts a line of its own."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)


def run_image_task(
    task: ImageTask,
    inputs: Sequence[str | Path],
    model_dir: str | Path,
    output_dir: str | Path,
    batch_size: int = 1,
    progress: bool = True,
) -> ImageRun:
    """Run ``task`` over the image files/folders ``inputs``: ``<name>.png`` per image and the manifest.

    The output folder is locked for the run; the manifest, rewritten every few seconds and on an error, says what was asked
    and what finished. A re-run of the same request resumes (finished, unchanged inputs are kept); the
    pictures of an earlier, different request are removed, so the folder always matches its manifest.
    """
    files = collect_valid_images(inputs)
    model_dir, _ = require_family_folder(model_dir, task.name)  # before the output folder is created
    output_dir = Path(output_dir)
    with lock_output(output_dir, output_dir / LOCK_NAME):
        predict = load_model_folder(model_dir, task.load)
        plan = RunPlan(task, model_dir, output_dir, files)
        todo = plan.start()
        with progress_bar(len(files), task.name, "image", progress) as bar:
            bar.update(len(files) - len(todo))
            saved = time.monotonic()
            try:
                for start in range(0, len(todo), batch_size):
                    batch = todo[start : start + batch_size]
                    images = [open_image(f) for f in batch]
                    for file, image, result in zip(batch, images, predict(images), strict=True):
                        write_png(plan.picture(file), task.render(image, result))
                        plan.finish(file, image, result)
                        bar.update()
                    if time.monotonic() - saved >= SAVE_EVERY:  # the manifest grows: not after every batch
                        plan.save()
                        saved = time.monotonic()
            except BaseException:
                plan.save()  # an error or Ctrl-C keeps what finished; a SIGKILL loses at most SAVE_EVERY
                raise
        coco = plan.export_coco()  # before ``complete``: a complete manifest always has its COCO file
        plan.save(complete=True)
    pictures = [plan.picture(f) for f in files]
    return ImageRun(plan.results, pictures, plan.manifest, plan.entries, plan.resumed, coco)
