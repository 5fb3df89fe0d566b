"""How the parity tool runs SAM3-LiteText golden cases (text-encoder weights cases and tokenizer cases)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from ...parity import ParityReport, TensorCheck
from .image_processing_sam3_lite_text import Sam3LiteTextImageProcessor
from .tokenization_sam3_lite_text import Sam3LiteTextTokenizer

Tensors = dict[str, torch.Tensor]
FINALS = {"text_memory", "language_features", "language_mask"}
_DETECTOR_FINAL = re.compile(
    r"(p\d+_)?(pred_logits|pred_boxes|pred_masks|presence_logit_dec|semantic_seg|post_\w+)"
)


class Sam3LiteTextParity:
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

    def tolerance(self, case: Mapping[str, Any], label: str) -> tuple[dict[str, float], float, float]:
        spec = case.get("tolerances", {})
        default = float(spec.get(f"{label}_max_abs_diff", 1e-5))
        names = [o["name"] if isinstance(o, dict) else o for o in case.get("outputs", [])]
        # case.json: "post_boxes_xyxy is in pixels: 1e-2"
        pixels = {
            n: 1e-2 for n in names if n.endswith("post_boxes_xyxy") and "1e-2" in str(spec.get("note", ""))
        }
        return pixels, default, 0.0

    def run(self, model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
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
        """Each prompt as its own query on the same image (the original ``Sam3Processor`` path)."""
        config = case.get("config", {})
        thresholds = config.get("confidence_threshold", model.config.threshold)
        pixels = inputs["pixel_values"]
        vision = model.get_image_features(pixels)
        grid = pixels.shape[-1] // model.config.detector["patch_size"]
        result: Tensors = {
            "vit_trunk_output": vision.last_hidden_state.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        }
        for level in range(3):
            result[f"backbone_fpn_{level}"] = vision.fpn_hidden_states[level]
            result[f"vision_pos_enc_{level}"] = vision.fpn_position_encoding[level]
        processor = Sam3LiteTextImageProcessor(size=pixels.shape[-1])
        height, width = (int(v) for v in inputs.get("original_size", torch.tensor(pixels.shape[-2:])))
        for k in range(inputs["input_ids"].shape[0]):
            ids = inputs["input_ids"][k : k + 1]
            out = model(input_ids=ids, vision_outputs=vision)
            det, p = out.detector_outputs, f"p{k}_"
            result.update({
                p + "language_features": out.text_outputs.last_hidden_state.transpose(0, 1),
                p + "language_mask": ids == 0,
                p + "geometry_prompt_feats": det.prompt_features[:, -1:].transpose(0, 1),
                p + "geometry_prompt_mask": ~det.prompt_mask[:, -1:],
                p + "prompt_tokens": det.prompt_features.transpose(0, 1),
                p + "prompt_mask": ~det.prompt_mask,
                p + "encoder_memory": det.encoder_memory.transpose(0, 1),
                p + "decoder_hidden_states": det.decoder_hidden_states.transpose(1, 2),
                p + "decoder_reference_boxes": det.decoder_reference_boxes.transpose(1, 2),
                p + "presence_logit_dec": det.presence_logits,
                p + "presence_score": det.presence_logits.sigmoid(),
                p + "pred_logits": det.pred_logits,
                p + "pred_boxes": det.pred_boxes,
                p + "pred_boxes_xyxy": det.pred_boxes_xyxy,
                p + "pred_masks": det.pred_masks,
                p + "semantic_seg": det.semantic_seg,
            })  # fmt: skip
            threshold = thresholds[k] if isinstance(thresholds, list) else thresholds
            post = processor.post_process_instance_segmentation(
                out, threshold=threshold, target_sizes=[(height, width)]
            )[0]
            result.update({p + "post_scores": post["scores"], p + "post_boxes_xyxy": post["boxes"],
                           p + "post_masks_prob": post["mask_probs"][:, None], p + "post_masks": post["masks"][:, None]})  # fmt: skip
        return result

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
