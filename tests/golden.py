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
