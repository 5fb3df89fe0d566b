"""How the parity tool runs SAM3-LiteText golden cases (text-encoder weights cases and tokenizer cases)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from ...core.parity import ParityAdapter, ParityReport, TensorCheck
from .detector_sam3_lite_text import pair_indices
from .tokenization_sam3_lite_text import Sam3LiteTextTokenizer

Tensors = dict[str, torch.Tensor]
GEOMETRY_INPUTS = ("input_points", "input_points_labels", "input_boxes", "input_boxes_labels")
FINALS = {"text_memory", "language_features", "language_mask"}
_DETECTOR_FINAL = re.compile(
    r"(p\d+_)?(pred_logits|pred_boxes|pred_masks|presence_logit_dec|semantic_seg|post_\w+)"
    r"|c\d+_(masks|scores|low_res_masks)|(p0|f\d+)_(obj_ids|scores|boxes_xywh|masks)"
)
VIDEO_OUTPUTS = ("obj_ids", "scores", "boxes_xywh", "masks", "tracker_scores", "mask_logits")


class Sam3LiteTextParity(ParityAdapter):
    def final_outputs(self, case: Mapping[str, Any]) -> set[str]:
        """Text finals, plus the detector's outputs when the case records them (they must be produced)."""
        outputs = case.get("outputs", [])
        names = [o["name"] if isinstance(o, dict) else o for o in outputs]
        return set(FINALS) | {n for n in names if _DETECTOR_FINAL.fullmatch(n)}

    def conversion_options(self, case: Mapping[str, Any]) -> dict[str, Any]:
        config = case.get("config", {})
        student = config.get("student_cfg", config)
        name = case.get("variant") or config.get("text_encoder_type", "")
        variant = {"MobileCLIP-S0": "s0", "MobileCLIP-S1": "s1", "MobileCLIP2-L": "l"}.get(name)
        overrides: dict[str, Any] = {}
        for source in (student, config):
            for key in ("n_heads_per_layer", "n_heads"):
                if key in source and "num_attention_heads" not in overrides:
                    overrides["num_attention_heads"] = int(source[key])
        if "context_length" in config:
            overrides["context_length"] = int(config["context_length"])
        if isinstance(config.get("detector"), dict):
            overrides["detector"] = dict(config["detector"])
        return {"variant": variant, "config_overrides": overrides}

    def run(self, model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        if case.get("kind") == "interactive":
            return _run_interactive(model, inputs)
        if case.get("kind") == "video":
            return _run_video(model, inputs, case)
        if "pixel_values" in inputs and hasattr(model, "detector"):
            return self._run_detector(model, inputs, case)
        ids = inputs["input_ids"]
        out = model(ids, output_hidden_states=True)
        result: Tensors = {f"block_{i:02d}_output": h for i, h in enumerate(out.hidden_states[1:])}
        mask = ids == 0
        result.update({
            "embedding_output": out.hidden_states[0],
            "final_layer_norm_output": out.encoder_last_hidden_state,
            "text_memory": out.last_hidden_state,
            "language_features": out.last_hidden_state.transpose(0, 1),
            "language_mask": mask,
            "text_attention_mask": mask,
            "language_embeds": out.hidden_states[0].transpose(0, 1),
            "positional_embedding": model.position_embedding,
            "pooled_projected": out.pooled_output,
        })  # fmt: skip
        return result

    def _run_detector(self, model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """Image features once; then either every prompt as its own batch-1 query on the one image (the original
        ``Sam3Processor`` path) or, for a batch, one ``forward_grounding`` over every (image, prompt) pair."""
        pixels, ids = inputs["pixel_values"], inputs["input_ids"]
        vision = model.get_image_features(pixels)
        height, width = (side // model.config.detector["patch_size"] for side in pixels.shape[-2:])
        trunk = vision.last_hidden_state.reshape(pixels.shape[0], height, width, -1).permute(0, 3, 1, 2)
        result: Tensors = {"vit_trunk_output": trunk}
        for level in range(3):
            result[f"backbone_fpn_{level}"] = vision.fpn_hidden_states[level]
            result[f"vision_pos_enc_{level}"] = vision.fpn_position_encoding[level]
        image_ids, text_ids, batched = _pairs(inputs)
        geometry = {name: inputs[name] for name in GEOMETRY_INPUTS if name in inputs}
        # every pair in one forward_grounding batch: the unprefixed names (also for one image with many prompts)
        out = model(input_ids=ids, vision_outputs=vision, image_ids=image_ids, text_ids=text_ids, **geometry)
        text = out.text_outputs.last_hidden_state
        result.update({"language_features": text.transpose(0, 1), "language_mask": ids == 0})
        query = _query_tensors(out.detector_outputs)
        result.update(query)
        if batched:
            for k, t in enumerate(text_ids.tolist()):
                result.update(_prefixed(query, text[t : t + 1], ids[t : t + 1], k))
            return result
        for k in range(ids.shape[0]):
            out = model(input_ids=ids[k : k + 1], vision_outputs=vision)
            result.update(_prefixed(_query_tensors(out.detector_outputs), out.text_outputs.last_hidden_state,
                                    ids[k : k + 1], k, sliced=False))  # fmt: skip
        return result

    def align(self, ours: Tensors, reference: Tensors, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """Video cases: a mask pixel whose logit lies within the case's ``mask_logit_band`` of 0 is not decided by
        the comparison (the logits themselves are held to their tolerance)."""
        band = case.get("tolerances", {}).get("mask_logit_band")
        if case.get("kind") != "video" or band is None:
            return ours
        aligned = dict(ours)
        for name, logits in ours.items():
            mask_name = name.removesuffix("mask_logits") + "masks"
            if name.endswith("_mask_logits") and mask_name in reference and mask_name in ours:
                undecided = logits.abs() <= float(band)
                aligned[mask_name] = torch.where(undecided, reference[mask_name], ours[mask_name])
        return aligned

    def preprocess(self, processor: Any, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """``pixel_values`` made by the saved processor from ``image_uint8`` ([3, H, W] or [B, 3, H, W])."""
        if "image_uint8" not in inputs or not hasattr(processor, "post_process_instance_segmentation"):
            return {}
        images = inputs["image_uint8"]
        return {"pixel_values": processor(images, input_data_format="channels_first")["pixel_values"]}

    def postprocess(
        self, processor: Any, outputs: Tensors, inputs: Tensors, case: Mapping[str, Any]
    ) -> Tensors:
        """``p{k}_post_*``: the processor's instance post-processing of every query at its image's size;
        ``c{k}_masks`` of interactive cases: ``post_process_masks`` of every call at the original size."""
        if case.get("kind") == "interactive" and hasattr(processor, "post_process_masks"):
            return _post_interactive(processor, outputs, inputs)
        count = sum(1 for name in outputs if re.fullmatch(r"p\d+_pred_logits", name))
        if not count or not hasattr(processor, "post_process_instance_segmentation"):
            return {}
        image_ids, _, _ = _pairs(inputs)
        stacked = {name: torch.cat([outputs[f"p{k}_{source}"] for k in range(count)])
                   for name, source in _POST_INPUTS.items()}  # fmt: skip
        stacked["image_ids"] = image_ids[:count]
        thresholds = case.get("config", {}).get("confidence_threshold", processor.threshold)
        thresholds = thresholds if isinstance(thresholds, list) else [thresholds] * count
        sizes = _original_sizes(inputs, case, int(image_ids.max()) + 1)
        posts = processor.post_process_instance_segmentation(
            stacked, threshold=thresholds, target_sizes=sizes
        )
        result: Tensors = {}
        for k, post in enumerate(posts):
            result.update({f"p{k}_post_scores": post["scores"], f"p{k}_post_boxes_xyxy": post["boxes"],
                           f"p{k}_post_masks_prob": post["mask_probs"][:, None],
                           f"p{k}_post_masks": post["masks"][:, None]})  # fmt: skip
        return result

    def check_other(self, case_dir: Path, case: Mapping[str, Any]) -> ParityReport | None:
        """Tokenizer cases: prompts with the original's ids at several context lengths (exact match)."""
        if "cases" not in case:
            return None
        report = ParityReport(case=case.get("case", case_dir.name), kind="tokenizer")
        checks = []
        for index, item in enumerate(case["cases"]):
            for key, expected in item.items():
                match = re.fullmatch(r"input_ids_ctx(\d+)", key)
                if not match:
                    continue
                got = Sam3LiteTextTokenizer(int(match.group(1))).encode(item["prompt"])[0]
                wrong = sum(a != b for a, b in zip(got, expected, strict=False)) + abs(
                    len(got) - len(expected)
                )
                checks.append(TensorCheck(f"prompt{index:02d}.{key}", (len(expected),), float(wrong), None, 0.0,
                                          wrong == 0, True, "exact" if wrong == 0 else f"{wrong} ids differ"))  # fmt: skip
        report.sections["tokenizer"] = checks
        report.ok = bool(checks) and all(c.passed for c in checks)
        return report


def _run_video(model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
    """The original notebook's sequence (``add_prompt`` on frame 0, then the propagation) on the case's exact
    pixels with its settings: ``p0_*`` and ``f{k}_*``, the trace of every recorded intermediate included."""
    from .video_sam3_lite_text import Sam3LiteTextVideoSettings, track_video_like_original

    names = {field for field in Sam3LiteTextVideoSettings.__dataclass_fields__}
    settings = Sam3LiteTextVideoSettings(
        **{k: v for k, v in case["video_model_hparams"].items() if k in names}
    )
    trace: Tensors = {}
    first, outputs = track_video_like_original(model, inputs["input_ids"], inputs["pixel_values_fp16"], settings,
                                               trace=trace)  # fmt: skip
    for prefix, out in [("p0_", first)] + [(f"f{k}_", o) for k, o in enumerate(outputs)]:
        trace.update({prefix + name: getattr(out, name) for name in VIDEO_OUTPUTS})
    return trace


def _call_count(inputs: Tensors) -> int:
    return len({int(m.group(1)) for name in inputs if (m := re.match(r"c(\d+)_multimask_output$", name))})


def _single(tensor: torch.Tensor) -> torch.Tensor:
    """One image's per-object tensor as the original returns it: the object axis dropped for one object."""
    return tensor[0] if tensor.shape[0] == 1 else tensor


def _run_interactive(model: PreTrainedModel, inputs: Tensors) -> Tensors:
    """Every ``c{k}`` call of an interactive case on one image's features: ``predict_masks`` with the
    processor's conversion of the pixel prompts (one object per box, or one object with the points)."""
    from .image_processing_sam3_lite_text import prepare_object_prompts

    vision = model.get_image_features(inputs["pixel_values"])
    features = model.get_tracker_features(vision)
    result: Tensors = {"tracker_image_embed": features.image_embeddings}
    result.update({f"tracker_high_res_{i}": f for i, f in enumerate(features.high_resolution_features)})
    size = inputs["original_size"].reshape(1, 2)
    for k in range(_call_count(inputs)):
        points, boxes = inputs.get(f"c{k}_point_coords"), inputs.get(f"c{k}_box")
        labels = inputs.get(f"c{k}_point_labels")
        prompts = prepare_object_prompts(
            size,
            input_points=None if points is None else [[points.tolist()]],
            input_labels=None if labels is None else [[labels.tolist()]],
            input_boxes=None if boxes is None else [boxes.tolist()],
        )
        mask = inputs.get(f"c{k}_mask_input")
        out = model.predict_masks(tracker_features=features, multimask_output=bool(inputs[f"c{k}_multimask_output"]),
                                  input_masks=None if mask is None else mask[None], **prompts)  # fmt: skip
        result.update({f"c{k}_scores": _single(out.iou_scores[0]),
                       f"c{k}_low_res_masks": _single(out.pred_masks[0].clamp(-32.0, 32.0)),
                       f"c{k}_pred_masks": out.pred_masks, f"c{k}_iou_scores": out.iou_scores,
                       f"c{k}_object_score_logits": out.object_score_logits})  # fmt: skip
    return result


def _post_interactive(processor: Any, outputs: Tensors, inputs: Tensors) -> Tensors:
    size = inputs["original_size"].reshape(1, 2)
    names = ("pred_masks", "iou_scores", "object_score_logits")
    raw = [{name: outputs[f"c{k}_{name}"] for name in names} for k in range(_call_count(inputs))]
    return {
        f"c{k}_masks": _single(processor.post_process_masks(out, size)[0]["masks"])
        for k, out in enumerate(raw)
    }


_POST_INPUTS = {"pred_logits": "pred_logits", "presence_logits": "presence_logit_dec", "pred_boxes": "pred_boxes",
                "pred_masks": "pred_masks"}  # fmt: skip


def _pairs(inputs: Tensors) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(image_ids, text_ids, batched): the case's ids, image b with prompt b for a batch of images, or the one
    image with every prompt, each as its own query (not batched)."""
    if "pixel_values" in inputs:
        images = inputs["pixel_values"].shape[0]
    else:
        images = inputs["image_uint8"].shape[0] if inputs["image_uint8"].ndim == 4 else 1
    texts = inputs["input_ids"].shape[0]
    given = [inputs.get(name) for name in ("img_ids", "image_ids", "text_ids")]
    if any(g is not None for g in given):
        image_ids = given[0] if given[0] is not None else given[1]
        return *pair_indices(images, texts, image_ids, given[2]), True
    if images > 1:
        return *pair_indices(images, texts), True
    return torch.zeros(texts, dtype=torch.long), torch.arange(texts), False


def _query_tensors(det: Any) -> Tensors:
    """The original's per-query tensors (sequence-first where the original is; masks True = padding)."""
    return {
        "geometry_prompt_feats": det.geometry_features.transpose(0, 1),
        "geometry_prompt_mask": ~det.geometry_mask,
        "prompt_tokens": det.prompt_features.transpose(0, 1),
        "prompt_mask": ~det.prompt_mask,
        "encoder_memory": det.encoder_memory.transpose(0, 1),
        "decoder_hidden_states": det.decoder_hidden_states.transpose(1, 2),
        "decoder_reference_boxes": det.decoder_reference_boxes.transpose(1, 2),
        "presence_logit_dec": det.presence_logits,
        "presence_score": det.presence_logits.sigmoid(),
        "pred_logits": det.pred_logits,
        "pred_boxes": det.pred_boxes,
        "pred_boxes_xyxy": det.pred_boxes_xyxy,
        "pred_masks": det.pred_masks,
        "semantic_seg": det.semantic_seg,
    }


# the query axis of each per-query tensor (sequence-first tensors carry it second)
_QUERY_AXIS = {"geometry_prompt_feats": 1, "prompt_tokens": 1, "encoder_memory": 1, "decoder_hidden_states": 2,
               "decoder_reference_boxes": 2}  # fmt: skip


def _prefixed(query: Tensors, text: torch.Tensor, ids: torch.Tensor, k: int, sliced: bool = True) -> Tensors:
    """``p{k}_*``: query ``k`` of a batched run (``sliced``) or a batch-1 run, with its prompt's text tensors."""
    result = {f"p{k}_language_features": text.transpose(0, 1), f"p{k}_language_mask": ids == 0}
    for name, tensor in query.items():
        axis = _QUERY_AXIS.get(name, 0)
        result[f"p{k}_{name}"] = tensor.narrow(axis, k, 1) if sliced else tensor
    return result


def _original_sizes(inputs: Tensors, case: Mapping[str, Any], images: int) -> torch.Tensor:
    """(height, width) per image: ``original_size`` ([2] or [B, 2]), the case's preprocessing note, the raw
    image's size or the pixel size."""
    if "original_size" in inputs:
        size = inputs["original_size"].long().reshape(-1, 2)
    elif "original_size_for_postprocessing" in case.get("preprocessing", {}):
        size = torch.tensor(case["preprocessing"]["original_size_for_postprocessing"]).reshape(-1, 2)
    elif "image_uint8" in inputs:
        size = torch.tensor(inputs["image_uint8"].shape[-2:]).reshape(1, 2)
    else:
        size = torch.tensor(inputs["pixel_values"].shape[-2:]).reshape(1, 2)
    return size.expand(images, 2) if len(size) == 1 else size
