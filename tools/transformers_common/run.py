"""Run transformers' own common test mixins against visionports' models.

The mixins (``ModelTesterMixin``, ``ConfigTester``, ``ImageProcessingTestMixin``, ...) ship in the source
distribution of the installed transformers release, not in its wheel. This script fetches that sdist once
(``pip download``, the only step that needs the network), lays its ``tests/*.py`` out as a package with a
few small stand-ins for the helper modules the sdist leaves out, copies our testers (``testers/``) into it
and runs pytest there. Nothing of upstream's test code is kept in this repository.

    python tools/transformers_common/run.py                 # every tester
    python tools/transformers_common/run.py deimv2 -- -x   # one tester, extra pytest arguments after --
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import transformers

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "visionports" / "transformers-sdist"
)


def sdist_archive(cache: Path, version: str) -> Path:
    """The release's source archive, downloaded into ``cache`` the first time."""
    archive = cache / f"transformers-{version}.tar.gz"
    if not archive.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", f"transformers=={version}", "--no-binary", ":all:",
                   "--no-deps", "-d", str(cache)]  # fmt: skip
        subprocess.run(command, check=True)
    return archive


def build_harness(archive: Path, root: Path) -> Path:
    """``root/tests`` = the sdist's common test modules + stand-ins + our testers (rebuilt every run)."""
    if root.exists():
        shutil.rmtree(root)
    tests = root / "tests"
    tests.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py") and member.isfile():
                (tests / parts[2]).write_bytes(tar.extractfile(member).read())
    shutil.copytree(HERE / "stand_ins", root, dirs_exist_ok=True)
    shutil.copytree(HERE / "testers", tests / "visionports", ignore=shutil.ignore_patterns("__pycache__"))
    for package in ("tests", "tests/exporters", "tests/generation", "tests/utils", "tests/visionports"):
        (root / package / "__init__.py").touch()
    (root / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider\nfilterwarnings = ignore::pytest.PytestUnknownMarkWarning\n"
    )
    return tests / "visionports"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "families", nargs="*", help="testers to run (deimv2, videomt, sam3_lite_text, packed)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the sdist and harness live")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    version = transformers.__version__
    testers = build_harness(sdist_archive(args.cache, version), args.cache / f"harness-{version}")
    targets = [str(testers / f"test_common_{name}.py") for name in args.families] or [str(testers)]
    return subprocess.call([sys.executable, "-m", "pytest", *targets, *extra], cwd=testers.parent.parent)


if __name__ == "__main__":
    sys.exit(main())
