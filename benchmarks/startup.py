"""Start-up times (wall clock, min of ``--runs`` fresh interpreters): ``import visionports``, ``visionports
--help``, a verb's ``--help``, and what registering every family costs (the eager import before issue 15).

    python benchmarks/startup.py [--runs 5]

Also ``python -X importtime -c "import visionports"`` for the per-module breakdown.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

CASES = {
    "python -c pass (interpreter)": ["-c", "pass"],
    "import visionports (lazy)": ["-c", "import visionports"],
    "visionports --help": ["-m", "visionports.cli", "--help"],
    "visionports detect --help": ["-m", "visionports.cli", "detect", "--help"],
    "import torch": ["-c", "import torch"],
    "import visionports + register_all (eager, as before)": [
        "-c",
        "import visionports.models as m; m.register_all()",
    ],
    "import visionports + AutoModel (registers lazily)": [
        "-c",
        "import visionports; from transformers import AutoModel",
    ],
}


def wall_time(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    width = max(map(len, CASES))
    print(f"{'':{width}}  min s   mean s  ({runs} runs)")
    for name, args in CASES.items():
        times = [wall_time(args) for _ in range(runs)]
        print(f"{name:{width}}  {min(times):6.3f}  {sum(times) / runs:6.3f}")


if __name__ == "__main__":
    main()
