"""Golden-case discovery: tests/fixtures/<model>/ and, when set, $VISIONPORTS_FIXTURES/<model>/."""

from __future__ import annotations

import os
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def golden_cases(model: str) -> list[Path]:
    roots = [FIXTURES / model]
    extra = os.environ.get("VISIONPORTS_FIXTURES")
    if extra:
        roots.append(Path(extra) / model)
    cases: list[Path] = []
    for root in roots:
        if root.is_dir():
            cases += sorted(p for p in root.iterdir() if p.is_dir())
    return cases


def convert_case(model: str, case_dir: Path):
    """The in-memory model the parity tool converts from ``case_dir`` (the case's own conversion options)."""
    import json

    from visionports.core.conversion import convert_checkpoint
    from visionports.core.registry import get_family

    family = get_family(model)
    options = family.parity.conversion_options(json.loads((case_dir / "case.json").read_text()))
    checkpoint = next(p for p in sorted(case_dir.iterdir()) if p.name.startswith("checkpoint."))
    return convert_checkpoint(family, checkpoint, None, progress=False, variant=options.get("variant"),
                              config_overrides=options.get("config_overrides")).model.eval()  # fmt: skip
