"""Loading packed encoders: refuse, rather than keep random weights, when a folder does not cover the model."""

from __future__ import annotations

from typing import Any


class RefuseMissingWeightsMixin:
    """``from_pretrained`` raises when any of the model's weights is missing from the folder.

    transformers only warns about missing keys, which would silently leave randomly initialised weights.
    """

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any):
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        missing = sorted(info.get("missing_keys", []))
        mismatched = info.get("mismatched_keys", [])
        if missing or mismatched:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise ValueError(
                f"{cls.__name__}: the folder does not hold this encoder's weights (missing {len(missing)}: {shown}; "
                f"mis-shaped {len(mismatched)}); refusing to return randomly initialised weights"
            )
        return (model, info) if want_info else model
