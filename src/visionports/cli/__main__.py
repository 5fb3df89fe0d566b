"""``python -m visionports.cli``."""

from . import main

main()
