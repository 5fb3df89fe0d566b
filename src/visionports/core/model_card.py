"""Model cards: the ``README.md`` every visionports model folder carries, so a Hub repo says what it holds.

The card's front matter is Hub metadata (``library_name: visionports``, the family's ``pipeline_tag``, tags,
the original weights' licence); its ``visionports`` key records where the weights came from (checkpoint file
and sha256, variant, load report, parity evidence) and marks the card as generated: only a generated card is
ever rewritten, a user's own README.md is kept. Per-family facts come from :class:`~.registry.ModelFamily`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from .registry import ModelFamily

CARD_NAME = "README.md"
MARKER_KEY = "visionports"  # the front-matter key that marks a card as ours (it holds the provenance)
TEMPLATE_SENTENCE = "This is the model card of a 🤗 transformers model"  # transformers' blank card
NOT_VERIFIED = "not verified against a golden case (`visionports convert` runs no parity check)"


@dataclass
class Provenance:
    """Where a folder's weights came from, as recorded by ``visionports convert``."""

    checkpoint: str | None = None  # file name of the original checkpoint
    sha256: str | None = None  # of that file
    variant: str | None = None
    weights_source: str | None = None  # where in the checkpoint the weights were (e.g. "ema.module")
    load_report: str | None = None  # the conversion's load report summary
    parity: str = NOT_VERIFIED  # the parity evidence that was run

    @classmethod
    def from_dict(cls, data: Any) -> Provenance | None:
        if not isinstance(data, dict):
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names and v is not None})


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """``(metadata, body)`` of a card; ``({}, text)`` when it has no (readable) YAML front matter."""
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---\n", 4)
    if end < 0:
        return {}, text
    try:
        meta = yaml.safe_load(text[4:end])
    except yaml.YAMLError:
        return {}, text
    return (meta if isinstance(meta, dict) else {}), text[end + 5 :]


def is_generated_card(text: str) -> bool:
    """Whether a card is one visionports wrote (or transformers' blank template): one we may replace."""
    meta, _ = split_front_matter(text)
    return isinstance(meta.get(MARKER_KEY), dict) or TEMPLATE_SENTENCE in text


def read_provenance(card: str | Path) -> Provenance | None:
    """The provenance a generated card records (``None`` when there is no such card)."""
    try:
        text = Path(card).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    meta, _ = split_front_matter(text)
    mark = meta.get(MARKER_KEY)
    return Provenance.from_dict(mark.get("provenance")) if isinstance(mark, dict) else None


def card_metadata(family: ModelFamily, config: Any, provenance: Provenance | None) -> dict[str, Any]:
    """The card's front matter."""
    from .. import __version__

    variant = (provenance.variant if provenance else None) or getattr(config, "variant", None)
    tags = ["visionports", family.name.replace("_", "-")]
    if variant:
        tags.append(f"{family.name.replace('_', '-')}-{variant}")
    meta: dict[str, Any] = {"library_name": "visionports", "license": family.license}
    if family.pipeline_tag:
        meta["pipeline_tag"] = family.pipeline_tag
    meta["tags"] = [*tags, "transformers"]
    if family.base_model:
        meta["base_model"] = family.base_model
    record = {k: v for k, v in asdict(provenance).items() if v is not None} if provenance else None
    meta[MARKER_KEY] = {
        "generated": True,
        "version": __version__,
        "family": family.name,
        "model_type": getattr(config, "model_type", None),
        "provenance": record,
    }
    return meta


def render_card(
    family: ModelFamily, config: Any, provenance: Provenance | None = None, repo_id: str | None = None
) -> str:
    """The whole ``README.md`` of a folder of ``family`` (``repo_id``: its Hub id, for the usage snippet)."""
    meta = card_metadata(family, config, provenance)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    body = "\n\n".join(_body_sections(family, config, provenance, repo_id or "path/to/this/folder"))
    return f"---\n{front}---\n\n{body}\n"


def _body_sections(family: ModelFamily, config: Any, provenance: Provenance | None, where: str) -> list[str]:
    name = family.display_name or family.name
    variant = (provenance.variant if provenance else None) or getattr(config, "variant", None)
    title = f"# {name}" + (f" ({variant})" if variant else "")
    what = f"{name}: {family.description}." if family.description else f"A {name} model."
    intro = (
        f"{what} This folder is a port to Hugging Face transformers made by "
        "[visionports](https://pypi.org/project/visionports/); its model type "
        f"(`{getattr(config, 'model_type', '?')}`) loads only after `import visionports`."
    )
    return [title, intro, _source_section(family, provenance), _license_section(family), _usage_section(family, where),
            _citation_section(family)]  # fmt: skip


def _source_section(family: ModelFamily, provenance: Provenance | None) -> str:
    lines = ["## Source"]
    if family.original_url:
        lines.append(f"Original code: {family.original_url}.")
    if provenance is None or provenance.checkpoint is None:
        lines.append(
            "Converted weights: no conversion record (this folder was not written by `visionports convert`)."
        )
        lines.append(f"Parity: {NOT_VERIFIED}.")
        return "\n\n".join(lines)
    lines.append(
        f"Converted from the original checkpoint `{provenance.checkpoint}` (sha256 `{provenance.sha256}`)"
    )
    details = [f"{label}: {value}" for label, value in (("variant", provenance.variant),
               ("weights found at", provenance.weights_source), ("load report", provenance.load_report)) if value]  # fmt: skip
    if details:
        lines[-1] += "; " + "; ".join(details)
    lines[-1] += "."
    lines.append(f"Parity: {provenance.parity}.")
    return "\n\n".join(lines)


def _license_section(family: ModelFamily) -> str:
    text = f"## License\n\nThe original weights' licence: `{family.license}`."
    return f"{text} {family.license_note}" if family.license_note else text


def _usage_section(family: ModelFamily, where: str) -> str:
    auto = family.auto_model
    lines = [
        "## Usage",
        "Install the package with `pip install visionports`, then import it before the Auto classes (it registers "
        "the model type with transformers):",
        f'`import visionports`; `from transformers import {auto}`; `model = {auto}.from_pretrained("{where}")`.',
    ]
    if family.tasks:
        verbs = ", ".join(f"`visionports {verb} ... --model {where}`" for verb in family.tasks)
        lines.append(f"From the command line: {verbs}.")
    return "\n\n".join(lines)


def _citation_section(family: ModelFamily) -> str:
    if family.paper_url:
        return f"## Citation\n\nPlease cite the original work: {family.paper_url}."
    if family.original_url:
        return f"## Citation\n\nPlease cite the original work, see {family.original_url}."
    return "## Citation\n\nPlease cite the original work."


def write_card(folder: str | Path, card: str, *, replace_user_card: bool = False) -> bool:
    """Write ``card`` as ``folder/README.md`` unless a user's own card is there; whether it was written."""
    path = Path(folder) / CARD_NAME
    if path.exists() and not replace_user_card:
        try:
            existing = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        if not is_generated_card(existing):
            return False
    tmp = path.with_name(f".{CARD_NAME}.{os.getpid()}.partial")
    tmp.write_text(card, encoding="utf-8")
    os.replace(tmp, path)
    return True


def write_model_card(
    folder: str | Path, model: Any, provenance: Provenance | None = None, repo_id: str | None = None
) -> bool:
    """Write the card of ``model`` (a visionports model) into ``folder``, keeping a user's own README.md.

    ``False`` when none was written (a user's card kept, or a model of no visionports family).
    """
    from .registry import family_for_config

    try:
        family = family_for_config(model.config)
    except ValueError:
        return False
    card = render_card(family, model.config, provenance, repo_id)
    return write_card(folder, card)
