"""The user-facing tasks behind the CLI verbs: detect, segment images, segment video."""
