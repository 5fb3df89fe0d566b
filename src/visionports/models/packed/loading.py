"""Loading packed encoders: refuse, rather than keep random weights, when a folder does not cover the model."""

from __future__ import annotations

from typing import Any

from ...core.pretrained import ReloadIdenticalMixin


class RefuseMissingWeightsMixin(ReloadIdenticalMixin):
    """``from_pretrained`` raises when any of the model's weights is missing from the folder.

    transformers only warns about missing keys, which would silently leave randomly initialised weights. With no
    folder (``from_pretrained(None, config=..., state_dict=...)``) the caller supplies the weights explicitly, and
    the missing ones are initialised and reported as transformers does. Loaded weights get aligned memory
    (:class:`~visionports.core.pretrained.ReloadIdenticalMixin`).
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any = None, *args: Any, **kwargs: Any):
        if pretrained_model_name_or_path is None:
            return super().from_pretrained(None, *args, **kwargs)
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
        )
        missing = sorted(info.get("missing_keys", []))
        mismatched = info.get("mismatched_keys", [])
        if missing or mismatched:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise ValueError(
                f"{cls.__name__}: the folder does not hold this encoder's weights (missing {len(missing)}: {shown}; "
                f"mis-shaped {len(mismatched)}); refusing to return randomly initialised weights"
            )
        return (model, info) if want_info else model
