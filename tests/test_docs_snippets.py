"""Every fenced block of README.md and docs/**/*.md runs here as written, on tiny converted golden-case models.

Each test works in a temporary folder holding what the snippet names (``deimv2-s`` → a converted golden model,
``street.jpg`` → a small random image, a released checkpoint's file name → a golden checkpoint). A block that
cannot run here is in ``NOT_RUN`` with the reason; its other lines still run. ``test_every_block_is_tested``
fails on a block that is neither run nor listed.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from golden import FIXTURES
from visionports.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# block id -> why it (or the named lines of it) does not run here; the block's other lines run
NOT_RUN = {
    "README.md#Set up and test[1]": "creates a virtual environment and installs from PyPI (network); runs this suite",
    "README.md#Quick start (DEIMv2)[1]": "huggingface-cli download (network); the golden Atto checkpoint stands in",
    "docs/models/deimv2.md#Exporting for deployment[1]": "pip install (network)",
    "docs/models/deimv2.md#TensorRT[1]": "trtexec: TensorRT on an NVIDIA GPU",
    "docs/models/deimv2.md#Evaluating on a COCO-format data set[1]": "pip install (network)",
    "docs/models/deimv2.md#Fine-tuning[1]": "pip install (network)",
    "docs/models/sam3_lite_text.md#Parity[1]": "output sample",
    "docs/parity.md#The parity tool: proof on the user's path[1]": "output sample",
    "docs/architecture.md#Architecture: a map of the package[1]": "output sample (directory tree)",
}
# released checkpoints are replaced by golden ones; options a golden checkpoint needs instead of the released ones
STAND_IN_OPTIONS = {
    "--variant dinov2_s_ytvis2019": "--set num_attention_heads=4 --set min_size_test=64",
    "_ctx16.pt ./sam3-lite-s0": "_ctx16.pt ./sam3-lite-s0 --set num_attention_heads=8",
    "--epochs 24": "--epochs 24 --max-steps 2",  # 24 epochs take 100 s here: the test trains 2 steps
}
DEIMV2 = FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"
DEIMV2_S = FIXTURES / "deimv2" / "dinov3_s_tiny_s0_b1_256" / "checkpoint.pth"
SAM3 = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5" / "checkpoint.pt"
SAM3_TRACKER = FIXTURES / "sam3_lite_text" / "tiny_tracker_s0_mct" / "checkpoint.pt"
VIDEOMT = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth"


def _blocks() -> dict[str, str]:
    """``{"page#heading[n]": text}`` for every fenced block (n counts the blocks under one heading)."""
    blocks: dict[str, str] = {}
    for page in PAGES:
        heading, count, fence, lines = "", {}, None, []
        for line in page.read_text().splitlines():
            marker = re.match(r"(\s*)(```|~~~)", line)
            if fence is None and marker:
                fence, lines = marker.groups(), []
            elif fence is not None and marker and marker.group(2) == fence[1]:
                count[heading] = count.get(heading, 0) + 1
                name = f"{page.relative_to(ROOT).as_posix()}#{heading}[{count[heading]}]"
                blocks[name] = textwrap.dedent("\n".join(lines)) + "\n"
                fence = None
            elif fence is not None:
                lines.append(line)
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
    return blocks


BLOCKS = _blocks()


def _block(name: str) -> str:
    return BLOCKS[name]


def _untested(blocks: set[str], source: str) -> list[str]:
    run = set(re.findall(r'_(?:block|run_bash|exec_block)\(\s*"([^"]+)"', source))
    return sorted((blocks - run - NOT_RUN.keys()) | ((run | NOT_RUN.keys()) - blocks))


def test_every_block_is_tested() -> None:
    untested = _untested(set(BLOCKS), Path(__file__).read_text())
    assert not untested, (
        f"blocks neither run by {Path(__file__).name} nor in NOT_RUN (or stale ids): {untested}"
    )
    assert len(BLOCKS) >= 26
    assert _untested({*BLOCKS, "docs/new.md#New[1]"}, Path(__file__).read_text()) == ["docs/new.md#New[1]"]


def _run_bash(name: str) -> None:
    text = _block(name).replace("\\\n", " ")
    for old, new in STAND_IN_OPTIONS.items():
        text = text.replace(old, new)
    for args in (shlex.split(line, comments=True) for line in text.splitlines()):
        if not args:
            continue
        if args[0] != "visionports":
            assert name in NOT_RUN, f"{name}: {args[0]} does not run here; list the block in NOT_RUN"
            continue
        result = CliRunner().invoke(main, args[1:])
        assert result.exit_code == 0, f"{name}: {shlex.join(args)}\n{result.output}"


def _exec_block(name: str, namespace: dict | None = None) -> dict:
    namespace = {} if namespace is None else namespace
    exec(compile(_block(name), name, "exec"), namespace)
    return namespace


def _files(links: dict[str, Path] = {}, images: tuple[str, ...] = ()) -> None:  # noqa: B006 (read only)
    """Symlinks and random images (64×48) in the current folder, under the names the snippets use."""
    for name, target in links.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).symlink_to(target, target_is_directory=target.is_dir())
    rng = np.random.default_rng(0)
    for name in images:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(name)


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _convert(folder: Path, *args: str) -> Path:
    result = CliRunner().invoke(main, ["convert", *args[:2], str(folder), *args[2:]])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def deimv2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert(tmp_path_factory.mktemp("deimv2") / "model", "deimv2", str(DEIMV2))


@pytest.fixture(scope="module")
def sam3_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert(
        tmp_path_factory.mktemp("sam3") / "model",
        "sam3-lite-text",
        str(SAM3),
        "--set",
        "num_attention_heads=8",
    )


@pytest.fixture(scope="module")
def convert_tracker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert(tmp_path_factory.mktemp("sam3t") / "model", "sam3-lite-text", str(SAM3_TRACKER),
                    "--set", "num_attention_heads=8")  # fmt: skip


@pytest.fixture(scope="module")
def videomt_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert(tmp_path_factory.mktemp("videomt") / "model", "videomt", str(VIDEOMT),
                    "--set", "num_attention_heads=4", "--set", "min_size_test=64")  # fmt: skip


# README


def test_readme_quick_start(cwd: Path) -> None:
    state_dict = torch.load(DEIMV2, weights_only=True)["model"]
    Path("deimv2-s-original").mkdir()
    save_file({k: v.clone() for k, v in state_dict.items()}, "deimv2-s-original/model.safetensors")
    _files({"tests": ROOT / "tests", "docs": ROOT / "docs"}, images=("street.jpg",))
    _run_bash("README.md#Quick start (DEIMv2)[1]")
    assert Path("detections/street.png").is_file()
    _run_bash("README.md#Quick start (DEIMv2)[2]")
    assert Image.open("detections/golden_atto_input.png").size == (320, 320)


def test_deimv2_python(cwd: Path, deimv2_folder: Path) -> None:
    _files({"deimv2-s": deimv2_folder}, images=("street.jpg",))
    _exec_block("README.md#Quick start (DEIMv2)[3]")
    _exec_block("docs/models/deimv2.md#Detecting objects[2]")
    result = _exec_block("docs/models/deimv2.md#Detecting objects[3]")["result"]
    assert set(result) >= {"scores", "labels", "boxes"}
    outputs = _exec_block("docs/models/deimv2.md#Using the model[1]")["outputs"]
    assert outputs.logits.shape[:2] == outputs.pred_boxes.shape[:2] and outputs.logits.shape[0] == 2


# docs/models/deimv2.md


def test_deimv2_detect_and_convert(cwd: Path, deimv2_folder: Path) -> None:
    _files(
        {"deimv2_dinov3_s_coco.pth": DEIMV2_S, "last.pth": DEIMV2_S},
        images=("street.jpg", "more_images/a.jpg"),
    )
    _run_bash("docs/models/deimv2.md#Converting a released checkpoint[1]")
    assert Path("deimv2-s/config.json").is_file() and Path("deimv2-s-mine/config.json").is_file()
    Path("deimv2-s").rename("deimv2-s-converted")
    _files({"deimv2-s": deimv2_folder})
    _run_bash("docs/models/deimv2.md#Detecting objects[1]")
    assert {p.name for p in Path("detections").iterdir()} >= {"street.png", "a.png", "detections.json"}


def test_deimv2_export(cwd: Path, deimv2_folder: Path) -> None:
    _files({"deimv2-s": deimv2_folder})
    _run_bash("docs/models/deimv2.md#Exporting for deployment[1]")
    assert Path("deimv2-s.onnx").is_file() and Path("deimv2-s-raw.onnx").is_file()


def test_deimv2_evaluate_and_fine_tune(cwd: Path, deimv2_folder: Path) -> None:
    from visionports.data.synthetic_coco import make_synthetic_coco

    make_synthetic_coco("coco", num_train=1, num_val=2, image_size=(64, 64))
    annotations = Path("coco/annotations/instances_val.json")
    data = json.loads(annotations.read_text())  # the COCO class count of the converted model
    data["categories"] += [{"id": i, "name": f"class{i}"} for i in range(len(data["categories"]) + 1, 81)]
    annotations.write_text(json.dumps(data))
    _files({"deimv2-s": deimv2_folder, "deimv2-atto": deimv2_folder})
    _run_bash("docs/models/deimv2.md#Evaluating on a COCO-format data set[1]")
    make_synthetic_coco("my_coco_folder", num_train=2, num_val=1, image_size=(64, 64))
    _run_bash("docs/models/deimv2.md#Fine-tuning[1]")
    assert len(json.loads(Path("deimv2-atto-mine/config.json").read_text())["id2label"]) == 4


# docs/models/sam3_lite_text.md


def test_sam3_lite_text(cwd: Path, sam3_folder: Path) -> None:
    _files(
        {"efficient_sam3_image_encoder_mobileclip_s0_ctx16.pt": SAM3}, images=("photos/a.jpg", "street.jpg")
    )
    _run_bash("docs/models/sam3_lite_text.md#Use[1]")
    assert Path("segments/segments.json").is_file()
    Path("sam3-lite-s0").rename("sam3-converted")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)).save("cat.jpg")
    _files({"sam3-lite-s0": sam3_folder})
    _exec_block("docs/models/sam3_lite_text.md#Use[2]")
    namespace = _exec_block("docs/models/sam3_lite_text.md#Batches[1]")
    results, per_image = namespace["results"], namespace["per_image"]
    assert [(r["image_index"], r["prompt_index"], r["prompt"]) for r in results] == [
        (0, 0, "a cat"), (0, 1, "a dog"), (1, 2, "a hat")]  # fmt: skip
    assert results[2]["masks"].shape[-2:] == (60, 40) and results[0]["masks"].shape[-2:] == (48, 64)
    assert len(per_image) == 2 and {f["label"] for f in per_image[1]} <= {"a hat"}
    assert all(f["mask"].shape == (60, 40) for f in per_image[1])
    namespace = _exec_block("docs/models/sam3_lite_text.md#Text encoder[1]")
    model = namespace["model"]
    shape = (2, model.config.text.context_length, model.config.detector["d_model"])
    assert tuple(namespace["text"].last_hidden_state.shape) == shape


def test_sam3_lite_text_exemplars(cwd: Path, sam3_folder: Path) -> None:
    _files({"sam3-lite-s0": sam3_folder}, images=("street.jpg",))
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (400, 640, 3), dtype=np.uint8)).save(
        "photo.jpg"
    )  # the picture's size
    _run_bash("docs/models/sam3_lite_text.md#Box exemplars and points[1]")
    manifest = json.loads(Path("segments/segments.json").read_text())
    assert manifest["prompts"] == ["a ball"] and manifest["input_points"] == [[420.0, 190.0]]
    namespace = _exec_block("docs/models/sam3_lite_text.md#Use[2]")
    namespace["segmenter"] = namespace["pipeline"]("text-prompted-segmentation", model="./sam3-lite-s0")
    _exec_block("docs/models/sam3_lite_text.md#Box exemplars and points[2]", namespace)
    found = namespace["segmenter"]("photo.jpg", input_boxes=[[75, 155, 225, 305]], threshold=0.0)
    assert found and {f["label"] for f in found} == {"visual"} and found[0]["mask"].shape == (400, 640)


def test_sam3_lite_text_single_object(cwd: Path, convert_tracker: Path) -> None:
    _files({"sam3-lite-s0-tracker": convert_tracker})
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (400, 640, 3), dtype=np.uint8)).save("photo.jpg")
    _run_bash("docs/models/sam3_lite_text.md#Single objects from clicks and a box[1]")
    (entry,) = json.loads(Path("segments/segments.json").read_text())["images"]["photo.jpg"]
    assert entry["label"] == "object"
    namespace = _exec_block("docs/models/sam3_lite_text.md#Single objects from clicks and a box[2]")
    found = namespace["objects"]("photo.jpg", input_points=[[420, 190]], input_labels=[1])
    assert len(found) == 3 and found[0]["mask"].shape == (400, 640)


def test_sam3_lite_text_video(cwd: Path, convert_tracker: Path) -> None:
    from visionports.utils.video import write_video

    _files({"sam3-lite-s0-tracker": convert_tracker})
    rng = np.random.default_rng(4)
    write_video([rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)], "street.mp4", fps=5)
    _run_bash("docs/models/sam3_lite_text.md#Tracking a prompt through a video[1]")
    assert json.loads(Path("tracks.json").read_text())["frames"] == 3 and Path("tracked.mp4").is_file()
    frames = _exec_block("docs/models/sam3_lite_text.md#Tracking a prompt through a video[2]")["frames"]
    assert [f["frame"] for f in frames] == [0, 1, 2]


# docs/models/videomt.md


def test_videomt_command_line(cwd: Path, videomt_folder: Path) -> None:
    from visionports.utils.video import write_video

    rng = np.random.default_rng(0)
    write_video([rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)], "street.mp4", fps=5)
    _files({"yt_2019_vit_small_52.8.pth": VIDEOMT, "checkpoint.pth": VIDEOMT, "videomt-vspw": videomt_folder},
           images=("frames/00000.jpg", "frames/00001.jpg"))  # fmt: skip
    _run_bash("docs/models/videomt.md#Segmenting a video[1]")
    assert (
        Path("street_segmented.mp4").is_file() and Path("tracks.json").is_file() and Path("out.mp4").is_file()
    )
    Path("videomt-s").rename("videomt-s-first")
    _run_bash("docs/models/videomt.md#Converting[1]")
    assert Path("out/config.json").is_file()


def test_videomt_python(cwd: Path, videomt_folder: Path) -> None:
    _files({"videomt-s": videomt_folder}, images=("frames/00000.jpg", "frames/00001.jpg", "frames/00002.jpg"))
    namespace = _exec_block("docs/models/videomt.md#Segmenting a video[2]")
    assert namespace["video"]["masks"].shape[1:] == (3, 48, 64)
    whole = namespace["outputs"]
    _exec_block("docs/models/videomt.md#Streaming[1]", namespace)
    last = namespace["out"]
    torch.testing.assert_close(
        last.class_queries_logits[:, 0], whole.class_queries_logits[:, -1], atol=1e-5, rtol=0
    )


# the other pages


def test_packed_encoders(cwd: Path) -> None:
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    config = Aimv2VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                               patch_size=4, image_size=16, is_native=True)  # fmt: skip
    Aimv2VisionModel(config).save_pretrained("aimv2-large-patch14-native")
    _files(images=("street.jpg", "cat.jpg"))
    Image.fromarray(np.zeros((20, 36, 3), dtype=np.uint8)).save("dog.png")
    namespace = _exec_block("docs/models/packed_encoders.md#Packed variable-resolution ViT encoders[1]")
    assert len(namespace["per_image"]) == 3


def test_safety_catching_errors(tmp_path: Path) -> None:
    data = bytearray(VIDEOMT.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(data)
    namespace = {"damaged_checkpoint": damaged, "output_dir": tmp_path / "out"}  # named by the page's prose
    _exec_block("docs/safety.md#Catching errors[1]", namespace)
    assert "fails its CRC-32 check" in namespace["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.pth"]


def test_adding_a_family() -> None:
    from visionports.core.parity import ParityAdapter
    from visionports.core.registry import ModelFamily

    class ToyConfig:
        pass

    namespace = {  # the names the page's family.py imports from the family's own files
        "ModelFamily": ModelFamily, "ToyConfig": ToyConfig, "ToyModel": type("ToyModel", (), {}),
        "infer_config": lambda *a, **k: None, "convert_state_dict": lambda *a: None, "make_processor": lambda c: None,
        "ToyParity": ParityAdapter, "ToyImageProcessor": type("ToyImageProcessor", (), {}), "strip_wrapper": dict,
    }  # fmt: skip
    family = _exec_block("docs/adding_a_family.md#Adding a family[1]", namespace)["FAMILY"]
    assert family.name == "toy" and family.tasks == ("detect",)
