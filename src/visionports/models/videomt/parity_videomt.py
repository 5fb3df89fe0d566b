"""How the parity tool runs VidEoMT golden cases of the original implementation."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import torch
from transformers import PreTrainedModel

from ...core.parity import ParityAdapter, Tolerance
from .modeling_videomt import resample_position_table
from .postprocessing_videomt import restore_mask_size, video_class_logits

Tensors = dict[str, torch.Tensor]
FINALS = {"mask_logits", "class_logits", "propagated_queries"}
VIS = ("vis_scores", "vis_labels", "vis_query_ids", "vis_masks")
END_TO_END_FINALS = {
    "mask_logits", "class_logits", "video_class_logits", *VIS, "vis_canonical_order", "vss_semseg",
    "vps_panoptic", "vps_query_ids", "vps_relaxed_panoptic", "vps_relaxed_query_ids",
}  # fmt: skip
SEGMENT_FIELDS = (("id", "id"), ("isthing", "is_thing"), ("category_id", "label"))  # case.json -> ours


def is_end_to_end(inputs: Mapping[str, Any]) -> bool:
    """An end-to-end case (spec §9) carries raw ``frames_uint8`` and no prepared ``pixel_values``."""
    return "frames_uint8" in inputs and "pixel_values" not in inputs


def is_loss_case(inputs_or_case: Mapping[str, Any]) -> bool:
    """Training-loss cases carry ground-truth tracks (inputs) / ``"kind": "loss"`` (case.json)."""
    return "targets.labels" in inputs_or_case or inputs_or_case.get("kind") == "loss"


def labels_from_inputs(inputs: Tensors) -> list[dict[str, torch.Tensor]]:
    """``labels=`` of the model (one clip) from a loss case's ``targets.labels/ids/masks``."""
    return [
        {
            "class_labels": inputs["targets.labels"],
            "mask_labels": inputs["targets.masks"].bool(),
            "present": inputs["targets.ids"] >= 0,
        }
    ]


def run_loss_case(model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
    """The training forward of a loss case: train mode, the point draws seeded with the case's ``train_seed``."""
    was_training = model.training
    model.train()
    try:
        torch.manual_seed(int(case.get("train_seed", 0)))
        out = model(inputs["pixel_values"], labels=labels_from_inputs(inputs))
    finally:
        model.train(was_training)
    result: Tensors = {f"loss.{k}": v.detach() for k, v in out.loss_dict.items()}
    result["loss.total"] = out.loss.detach()
    return result


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


def settings_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Post-processing settings of an end-to-end case's ``test_settings``, as config values."""
    names = {"MAX_NUM": ("max_num_instances", int), "OBJECT_MASK_THRESHOLD": ("object_mask_threshold", float),
             "OVERLAP_THRESHOLD": ("overlap_threshold", float),
             "num_thing_classes_for_vps": ("num_thing_classes", int)}  # fmt: skip
    return {name: cast(settings[key]) for key, (name, cast) in names.items() if key in settings}


def relaxed_thresholds(settings: Mapping[str, Any]) -> tuple[float, float]:
    """(object, overlap) thresholds of ``test_settings.relaxed_vps``: a mapping or an ordered pair."""
    relaxed = settings["relaxed_vps"]
    if isinstance(relaxed, Mapping):
        lowered = {str(k).lower(): float(v) for k, v in relaxed.items()}
        pick = [next(v for k, v in lowered.items() if word in k) for word in ("object", "overlap")]
        return pick[0], pick[1]
    return float(relaxed[0]), float(relaxed[1])


class VideomtParity(ParityAdapter):
    def final_outputs(self, case: Mapping[str, Any]) -> set[str]:
        if is_loss_case(case):
            return {"loss.total", *(f"loss.{name}" for name in case.get("loss_terms", []))}
        return set(END_TO_END_FINALS | _segment_names()) if "test_settings" in case else set(FINALS)

    def conversion_options(self, case: Mapping[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if case.get("variant"):
            options["variant"] = case["variant"]
        overrides = original_overrides(case.get("config", {}))
        overrides.update(settings_overrides(case.get("test_settings", {})))
        if overrides:
            options["config_overrides"] = overrides
        return options

    def tolerance(self, case: Mapping[str, Any], label: str) -> Tolerance:
        """The case's tolerance; end-to-end cases add spec §9's: scores 1e-6 absolute, the padded frames exact
        (the binary masks and id maps are exact after :meth:`align`)."""
        per_tensor, atol, rtol = super().tolerance(case, label)
        if "test_settings" in case:
            per_tensor = {**per_tensor, "vis_scores": (1e-6, 0.0), "padded_pixel_values": (0.0, 0.0)}
        return per_tensor, atol, rtol

    def run(self, model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """Every video streamed frame by frame; from ``pixel_values`` [B, T, 3, H, W] or an end-to-end
        case's ``padded_pixel_values`` [T, 3, H, W] (one video, echoed back for comparison); a loss case's
        training forward."""
        if is_loss_case(inputs):
            return run_loss_case(model, inputs, case)
        if "pixel_values" in inputs:
            pixels = inputs["pixel_values"]
        elif "padded_pixel_values" in inputs:
            pixels = inputs["padded_pixel_values"][None]
        else:
            raise KeyError("VidEoMT cases need pixel_values or padded_pixel_values (made from frames_uint8)")
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
        for index in range(len(_block_outputs(model, videos[0].hidden_states))):
            stack(
                f"hidden_states_block{index:02d}",
                [_block_outputs(model, o.hidden_states)[index] for o in videos],
            )
        for j in range(len(videos[0].auxiliary_logits)):
            stack(f"aux_class_logits_{j}", [o.auxiliary_logits[j][0] for o in videos])
            stack(f"aux_mask_logits_{j}", [o.auxiliary_logits[j][1].transpose(1, 2) for o in videos])
        if getattr(embeddings, "grid", None):
            height, width = result["patch_embed"].shape[2:4]
            table = resample_position_table(embeddings.position_embeddings, embeddings.grid, height, width)
            result["pos_embed_resampled"] = table[0]
        if "padded_pixel_values" in inputs and "pixel_values" not in inputs:
            result["padded_pixel_values"] = inputs["padded_pixel_values"]
            result["video_class_logits"] = video_class_logits(result["class_logits"][0])
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
        last = _block_outputs(model, output.hidden_states)[-1][:, :, :num_queries]
        return model.norm(last) if model.config.norm_queries else last

    def case_tensors(self, case: Mapping[str, Any]) -> Tensors:
        """End-to-end cases: the VPS segments recorded in case.json (``<vps>_segments.{id,isthing,category_id}``)."""
        return case_segments(case)

    def preprocess(self, processor: Any, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """The processor on ``frames_uint8`` without resizing (the frames are the ones the original model
        read): ``padded_pixel_values`` for one end-to-end video [T, 3, h, w], ``pixel_values`` for a weights
        case's [B, T, 3, H, W]; {} without raw frames."""
        frames = inputs.get("frames_uint8")
        if frames is None:
            return {}
        if frames.ndim == 4:
            return {"padded_pixel_values": processor(frames, do_resize=False)["pixel_values"][0]}
        return {"pixel_values": processor(list(frames), do_resize=False)["pixel_values"]}

    def postprocess(
        self, processor: Any, outputs: Tensors, inputs: Tensors, case: Mapping[str, Any]
    ) -> Tensors:
        """An end-to-end case's VIS / VSS / VPS results from ``processor.post_process`` on ``run``'s logits,
        with masks at ``output_hw`` (VPS twice: the processor's thresholds and the case's relaxed pair);
        segments as ``<vps>_segments.{id,isthing,category_id}`` tensors; {} for other cases."""
        if not is_end_to_end(inputs) or "test_settings" not in case or "class_logits" not in outputs:
            return {}
        raw = {"class_queries_logits": outputs["class_logits"],
               "masks_queries_logits": outputs["mask_logits"].transpose(1, 2)}  # fmt: skip
        sizes = ([tuple(case["output_hw"])], [tuple(inputs["frames_uint8"].shape[-2:])])

        def post(task: str, **settings: Any) -> Any:
            return processor.post_process(raw, *sizes, task=task, **settings)[0]

        vis = post("instance")
        result: Tensors = {"vis_scores": vis["scores"], "vis_labels": vis["labels"],
                           "vis_query_ids": vis["track_ids"], "vis_masks": vis["masks"],
                           "vss_semseg": post("semantic")}  # fmt: skip
        objects, overlap = relaxed_thresholds(case["test_settings"])
        for name, panoptic in (("vps", post("panoptic")),
                               ("vps_relaxed", post("panoptic", object_threshold=objects, overlap_threshold=overlap))):  # fmt: skip
            result[f"{name}_panoptic"] = panoptic["segmentation"]
            segments = panoptic["segments"]
            result[f"{name}_query_ids"] = torch.tensor([s["track_id"] for s in segments], dtype=torch.int64)
            for field, ours in SEGMENT_FIELDS:
                result[f"{name}_segments.{field}"] = torch.tensor(
                    [int(s[ours]) for s in segments], dtype=torch.int64
                )
        return result

    def align(self, ours: Tensors, reference: Tensors, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """End-to-end cases: VIS results put in the reference's order through the canonical order; pixels of
        binary masks and id maps that differ only where the reference is within the logits tolerance of the
        decision (see :func:`roundoff_ambiguous`) take the reference's value."""
        if not is_end_to_end(inputs) or "test_settings" not in case or "vis_scores" not in ours:
            return ours
        ours = dict(ours)
        if "vis_canonical_order" in reference and len(reference["vis_canonical_order"]) == len(
            ours["vis_scores"]
        ):
            classes = ours["video_class_logits"].shape[-1] - 1
            order = canonical_order(ours["vis_scores"], ours["vis_query_ids"], ours["vis_labels"], classes)
            place = torch.empty_like(order)
            place[reference["vis_canonical_order"]] = order
            for name in VIS:
                ours[name] = ours[name][place]
            ours["vis_canonical_order"] = canonical_order(
                ours["vis_scores"], ours["vis_query_ids"], ours["vis_labels"], classes
            )
        if "mask_logits" in reference and "video_class_logits" in reference:
            atols, atol, rtol = self.tolerance(case, "float32")
            ambiguous = roundoff_ambiguous(reference, ours, case, atol, rtol)
            for name, where in ambiguous.items():
                if name in ours and name in reference and ours[name].shape == reference[name].shape:
                    ours[name] = torch.where(where, reference[name].to(ours[name].dtype), ours[name])
        return ours


def _block_outputs(model: PreTrainedModel, hidden_states: Any) -> list[torch.Tensor]:
    """One tensor per block, whether ``hidden_states`` starts with the embedding output (L + 1) or not."""
    states = list(hidden_states)
    return states[1:] if len(states) == model.config.num_hidden_layers + 1 else states


def _segment_names() -> set[str]:
    return {f"{v}_segments.{field}" for v in ("vps", "vps_relaxed") for field, _ in SEGMENT_FIELDS}


def case_segments(case: Mapping[str, Any]) -> Tensors:
    """``case.json``'s ``postprocessing.<vps>.segments_infos`` (id / isthing / category_id) as int64 tensors."""
    tensors: Tensors = {}
    for name, result in case.get("postprocessing", {}).items():
        if isinstance(result, Mapping) and "segments_infos" in result:
            for field, _ in SEGMENT_FIELDS:
                values = [int(info[field]) for info in result["segments_infos"]]
                tensors[f"{name}_segments.{field}"] = torch.tensor(values, dtype=torch.int64)
    return tensors


def canonical_order(
    scores: torch.Tensor, queries: torch.Tensor, labels: torch.Tensor, classes: int
) -> torch.Tensor:
    """Indices sorting VIS results by (-score, query * classes + label)."""
    key = queries.long() * classes + labels.long()
    by_key = torch.argsort(key, stable=True)
    return by_key[torch.argsort(-scores[by_key], stable=True)]


def roundoff_ambiguous(
    reference: Tensors, ours: Tensors, case: Mapping[str, Any], atol: float, rtol: float
) -> Tensors:
    """Pixels where the reference's decision lies within the logits tolerance, per post-processed output.

    A port whose logits differ from the reference by at most ``atol + rtol * |logit|`` (mask and class logits)
    may legitimately decide otherwise there: the bound is carried through the same resizes (bilinear weights
    are non-negative), the sigmoid (slope <= 1/4) and the softmax (|dp| <= 2 p |dz|), plus 1e-6 for the
    float32 round-off of the resizes. VIS masks: |resized logit| <= bound; VSS: the two classes' scores
    closer than their bounds; VPS: the best two ``score * mask`` closer than their bounds, or the winning
    mask within its bound of 0.5.
    """
    sizes = (tuple(case["padded_hw"]), tuple(case["resized_hw"]), tuple(case["output_hw"]))
    logits = reference["mask_logits"][0]  # [Q, T, h, w]
    band = restore_mask_size(atol + rtol * logits.abs(), *sizes) + 1e-6
    video = reference["video_class_logits"]
    probs = torch.softmax(video, -1)
    dz = (atol + rtol * video.abs()).amax(-1, keepdim=True)
    dprobs = 2 * probs * dz + 1e-6
    result: Tensors = {}
    if "vis_query_ids" in ours:
        queries = ours["vis_query_ids"]
        resized = restore_mask_size(logits[queries], *sizes)
        result["vis_masks"] = resized.abs() <= band[queries]
    masks = restore_mask_size(logits, *sizes, sigmoid=True)  # [Q, T, H, W]
    dmasks = 0.25 * band
    scores = torch.einsum("qc,qthw->cthw", probs[:, :-1], masks)
    dscores = torch.einsum("qc,qthw->cthw", dprobs[:, :-1], masks) + torch.einsum(
        "qc,qthw->cthw", probs[:, :-1], dmasks
    )
    if "vss_semseg" in ours:
        mine = ours["vss_semseg"].long()[None]
        theirs = reference["vss_semseg"].long()[None]
        gap = scores.gather(0, theirs) - scores.gather(0, mine)
        result["vss_semseg"] = (gap <= dscores.gather(0, theirs) + dscores.gather(0, mine))[0]
    settings = case["test_settings"]
    for name, threshold in (("vps", float(settings.get("OBJECT_MASK_THRESHOLD", 0.8))),
                            ("vps_relaxed", relaxed_thresholds(settings)[0])):  # fmt: skip
        best, label = probs.max(-1)
        keep = label.ne(probs.shape[-1] - 1) & (best > threshold)
        if f"{name}_panoptic" in ours and int(keep.sum()) > 0:
            result[f"{name}_panoptic"] = _panoptic_ambiguous(
                best[keep], dprobs.amax(-1)[keep], masks[keep], dmasks[keep]
            )
    return result


def _panoptic_ambiguous(
    scores: torch.Tensor, dscores: torch.Tensor, masks: torch.Tensor, dmasks: torch.Tensor
):
    weighted = scores.view(-1, 1, 1, 1) * masks
    bound = dscores.view(-1, 1, 1, 1) * masks + scores.view(-1, 1, 1, 1) * dmasks
    owner = weighted.argmax(0, keepdim=True)
    near_half = (masks.gather(0, owner) - 0.5).abs() <= dmasks.gather(0, owner)
    if masks.shape[0] < 2:
        return near_half[0]
    top = weighted.topk(2, dim=0)
    close = (
        top.values[0] - top.values[1]
        <= bound.gather(0, top.indices[:1])[0] + bound.gather(0, top.indices[1:])[0]
    )
    return near_half[0] | close
