"""Model cards: what `convert`, `save_pretrained` and `push_to_hub` write as README.md (no network)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from huggingface_hub import HfApi
from huggingface_hub.errors import EntryNotFoundError
from transformers import AutoModelForObjectDetection
from transformers.utils import hub as transformers_hub

from golden import FIXTURES
from visionports.core.model_card import (
    MARKER_KEY,
    Provenance,
    is_generated_card,
    render_card,
    split_front_matter,
)
from visionports.core.registry import all_families, get_family

CHECKPOINT = FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"
# the Hub's pipeline tags these families may use (https://huggingface.co/docs/hub/models-widgets#widget-types)
HUB_TAGS = {"object-detection", "image-segmentation", "mask-generation", "image-feature-extraction"}
LICENSES = {"deimv2": "apache-2.0", "videomt": "mit", "sam3_lite_text": "other", "packed": "other"}


def front_matter(text: str) -> dict[str, Any]:
    assert text.startswith("---\n")
    meta, body = split_front_matter(text)
    assert meta and body.strip(), "front matter parses as YAML and a body follows"
    return meta


@pytest.fixture(scope="module")
def converted(convert: Callable[..., Path]) -> Path:
    return convert("deimv2", CHECKPOINT)


@pytest.mark.parametrize("family", all_families(), ids=lambda f: f.name)
def test_card_of_every_family(family: Any) -> None:
    config = SimpleNamespace(model_type=f"visionports_{family.name}", variant="tiny")
    provenance = Provenance(checkpoint="w.pth", sha256="ab" * 32, variant="tiny")
    text = render_card(family, config, provenance, repo_id="owner/name")
    meta = front_matter(text)
    assert meta["library_name"] == "visionports"
    assert meta["pipeline_tag"] == family.pipeline_tag and family.pipeline_tag in HUB_TAGS
    slug = family.name.replace("_", "-")
    assert meta["tags"] == ["visionports", slug, f"{slug}-tiny", "transformers"]
    assert meta["license"] == LICENSES[family.name]
    if family.license == "other":
        assert family.license_note and family.license_note in text
    assert meta[MARKER_KEY]["provenance"]["sha256"] == "ab" * 32
    assert "pip install visionports" in text and "import visionports" in text
    assert 'from_pretrained("owner/name")' in text and (family.paper_url or family.original_url) in text
    assert is_generated_card(text)


def test_convert_writes_the_card(converted: Path) -> None:
    text = (converted / "README.md").read_text()
    meta = front_matter(text)
    record = meta[MARKER_KEY]["provenance"]
    assert record["sha256"] == hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()
    assert record["checkpoint"] == "checkpoint.pth" and record["variant"] == "atto"
    assert "missing 0" in record["load_report"]
    assert meta["library_name"] == "visionports" and meta["pipeline_tag"] == "object-detection"
    assert meta["base_model"] if get_family("deimv2").base_model else "base_model" not in meta
    assert "not verified against a golden case" in text and record["sha256"] in text


def test_save_pretrained_writes_the_card_and_reloads(converted: Path, tmp_path: Path) -> None:
    model = AutoModelForObjectDetection.from_pretrained(converted)
    model.save_pretrained(tmp_path / "copy")
    text = (tmp_path / "copy" / "README.md").read_text()
    assert (
        front_matter(text)[MARKER_KEY]["provenance"]
        == front_matter((converted / "README.md").read_text())[MARKER_KEY]["provenance"]
    ), "the conversion record travels with the model"
    again = AutoModelForObjectDetection.from_pretrained(tmp_path / "copy")
    assert type(again) is type(model)


def test_save_pretrained_keeps_a_users_card(converted: Path, tmp_path: Path) -> None:
    model = AutoModelForObjectDetection.from_pretrained(converted)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("# My detector\n\nHand-written.\n")
    model.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "# My detector\n\nHand-written.\n"
    (folder / "README.md").write_text(render_card(get_family("deimv2"), model.config) + "stale\n")
    model.save_pretrained(folder)
    assert not (folder / "README.md").read_text().endswith("stale\n"), "our own card is regenerated"


@pytest.fixture
def captured_uploads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, bytes]]:
    """Hub calls replaced: a new repo with no card; each commit's files captured instead of uploaded."""
    commits: list[dict[str, bytes]] = []

    def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> SimpleNamespace:
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self: HfApi, repo_id: str, operations: list, **kwargs: Any) -> SimpleNamespace:
        commits.append({op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    def no_card(*args: Any, **kwargs: Any) -> None:
        raise EntryNotFoundError("no README.md in the repo")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(transformers_hub.ModelCard, "load", no_card)
    return commits


def test_push_to_hub_uploads_our_card(
    converted: Path, tmp_path: Path, captured_uploads: list[dict[str, bytes]]
) -> None:
    model = AutoModelForObjectDetection.from_pretrained(converted)
    model.push_to_hub("owner/tiny-deimv2")
    model.save_pretrained(tmp_path / "pushed", push_to_hub=True, repo_id="owner/tiny-deimv2")
    assert len(captured_uploads) == 2
    for files in captured_uploads:
        assert "model.safetensors" in files and "config.json" in files
        text = files["README.md"].decode()
        meta = front_matter(text)
        assert meta["library_name"] == "visionports" and "transformers" in meta["tags"]
        assert "This is the model card of a 🤗 transformers model" not in text
        assert 'from_pretrained("owner/tiny-deimv2")' in text
        assert meta[MARKER_KEY]["provenance"]["checkpoint"] == "checkpoint.pth"


def test_card_front_matter_is_plain_yaml() -> None:
    text = render_card(get_family("sam3_lite_text"), SimpleNamespace(model_type="x"), None)
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "other" and meta[MARKER_KEY]["provenance"] is None
    assert "no conversion record" in text
