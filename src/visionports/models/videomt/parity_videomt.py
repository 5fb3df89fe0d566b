"""How the parity tool runs VidEoMT golden cases of the original implementation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from transformers import PreTrainedModel

from .modeling_videomt import resample_position_table

Tensors = dict[str, torch.Tensor]
FINALS = {"mask_logits", "class_logits", "propagated_queries"}


def original_overrides(original: Mapping[str, Any]) -> dict[str, Any]:
    """Config values the weights cannot tell, from a case's original config."""
    out: dict[str, Any] = {}
    for key in ("num_heads", "num_attention_heads"):
        if key in original:
            out["num_attention_heads"] = int(original[key])
    if "rope_theta" in original:
        out["rope_theta"] = float(original["rope_theta"])
    if "NORM_QUERIES" in original:
        out["norm_queries"] = bool(original["NORM_QUERIES"])
    if "layer_norm_eps" in original:
        out["layer_norm_eps"] = float(original["layer_norm_eps"])
    for key, name in (("PIXEL_MEAN", "image_mean"), ("PIXEL_STD", "image_std")):
        if key in original:
            out[name] = list(original[key])
    return out


class VideomtParity:
    def final_outputs(self, case: Mapping[str, Any]) -> set[str]:
        return set(FINALS)

    def conversion_options(self, case: Mapping[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if case.get("variant"):
            options["variant"] = case["variant"]
        overrides = original_overrides(case.get("config", {}))
        if overrides:
            options["config_overrides"] = overrides
        return options

    def tolerance(self, case: Mapping[str, Any], label: str) -> tuple[dict[str, float], float, float]:
        suggested = case.get("tolerances", {}).get(f"suggested_port_{label}", {})
        return {}, float(suggested.get("atol", 1e-5)), float(suggested.get("rtol", 0.0))

    def check_other(self, case_dir: Path, case: Mapping[str, Any]) -> None:
        return None

    def run(self, model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        pixels = inputs["pixel_values"]
        captured: dict[str, list[torch.Tensor]] = {"patch_embed": [], "embeddings": []}
        embeddings = model.embeddings
        hooks = [
            embeddings.patch_embeddings.register_forward_hook(
                lambda m, i, o: captured["patch_embed"].append(o.permute(0, 2, 3, 1))
            ),
            embeddings.register_forward_hook(lambda m, i, o: captured["embeddings"].append(o[0])),
        ]
        try:
            videos = [self._stream(model, pixels[b : b + 1]) for b in range(pixels.shape[0])]
        finally:
            for hook in hooks:
                hook.remove()
        frames = pixels.shape[1]
        result: Tensors = {}

        def stack(name: str, tensors: list[torch.Tensor]) -> None:
            result[name] = torch.cat(tensors, dim=0)

        stack("class_logits", [o.class_queries_logits for o in videos])
        stack("mask_logits", [o.masks_queries_logits.transpose(1, 2) for o in videos])  # 'b q t h w'
        stack("propagated_queries", [o.propagated_queries for o in videos])
        stack("queries_in", [o.queries_in for o in videos])
        stack("final_norm", [o.last_hidden_state for o in videos])
        for name in ("patch_embed", "embeddings"):  # captured call by call: videos in order, frames in order
            result[name] = torch.cat(captured[name], dim=0).unflatten(0, (pixels.shape[0], frames))
        stack("updater_input", [self._updater_input(model, o) for o in videos])
        for index in range(len(videos[0].hidden_states)):
            stack(f"hidden_states_block{index:02d}", [o.hidden_states[index] for o in videos])
        for j in range(len(videos[0].auxiliary_logits)):
            stack(f"aux_class_logits_{j}", [o.auxiliary_logits[j][0] for o in videos])
            stack(f"aux_mask_logits_{j}", [o.auxiliary_logits[j][1].transpose(1, 2) for o in videos])
        if getattr(embeddings, "grid", None):
            height, width = result["patch_embed"].shape[2:4]
            table = resample_position_table(embeddings.position_embeddings, embeddings.grid, height, width)
            result["pos_embed_resampled"] = table[0]
        return result

    @staticmethod
    def _stream(model: PreTrainedModel, video: torch.Tensor) -> SimpleNamespace:
        """Run one video frame by frame, carrying the state, as the released evaluation does."""
        state, steps = None, []
        for t in range(video.shape[1]):
            out = model(
                video[:, t : t + 1], state=state, output_hidden_states=True, output_auxiliary_logits=True
            )
            state = out.state
            steps.append(out)

        def cat(get) -> torch.Tensor:
            return torch.cat([get(o) for o in steps], dim=1)

        blocks = len(steps[0].hidden_states)
        aux = len(steps[0].auxiliary_logits)
        return SimpleNamespace(
            class_queries_logits=cat(lambda o: o.class_queries_logits),
            masks_queries_logits=cat(lambda o: o.masks_queries_logits),
            propagated_queries=cat(lambda o: o.propagated_queries),
            queries_in=cat(lambda o: o.queries_in),
            last_hidden_state=cat(lambda o: o.last_hidden_state),
            hidden_states=[cat(lambda o, i=i: o.hidden_states[i]) for i in range(blocks)],
            auxiliary_logits=[
                (cat(lambda o, j=j: o.auxiliary_logits[j][0]), cat(lambda o, j=j: o.auxiliary_logits[j][1]))
                for j in range(aux)
            ],
        )

    @staticmethod
    def _updater_input(model: PreTrainedModel, output: Any) -> torch.Tensor:
        """The queries fed to the updater: recovered exactly as the module computes them."""
        num_queries = model.config.num_queries
        last = output.hidden_states[-1][:, :, :num_queries]
        return model.norm(last) if model.config.norm_queries else last

    def preprocess(self, processor: Any, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """Model inputs made by the family's processor from the case's raw inputs; {} when it has none."""
        return {}

    def postprocess(
        self, processor: Any, outputs: Tensors, inputs: Tensors, case: Mapping[str, Any]
    ) -> Tensors:
        """The processor's user-facing post-processing of ``run``'s outputs; {} when the case records none."""
        return {}

    def align(self, ours: Tensors, reference: Tensors, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        return ours
