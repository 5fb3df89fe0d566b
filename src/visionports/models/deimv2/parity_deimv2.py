"""How the parity tool runs DEIMv2 golden cases of the original implementation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import PreTrainedModel

from ...core.parity import ParityAdapter
from ...utils.boxes import center_to_corners
from .postprocessing_deimv2 import select_detections, to_coco_category_ids

Tensors = dict[str, torch.Tensor]

FINALS = {
    "pred_logits",
    "pred_boxes",
    "post.labels",
    "post.boxes",
    "post.scores",
    "post.labels_coco_category",
}
# tensors indexed by decoder query (dim 1), re-ordered together when aligning query orders
_PER_QUERY = ("pred_logits", "pred_boxes", "decoder.enc_topk_content", "decoder.enc_topk_bbox_unact",
              "decoder.pre_bbox_head", "decoder.enc_topk_index")  # fmt: skip


def yml_overrides(original_config: Mapping[str, Any]) -> dict[str, Any]:
    """Config values the weights cannot tell, read from an original (resolved) yml config."""
    out: dict[str, Any] = {}
    decoder = original_config.get("DEIMTransformer", {})
    if "num_queries" in decoder:
        out["num_queries"] = decoder["num_queries"]
    if "feat_strides" in decoder:
        out["decoder_feat_strides"] = list(decoder["feat_strides"])
    hybrid = (
        original_config.get("HybridEncoder", {})
        if original_config.get("DEIM", {}).get("encoder") != "LiteEncoder"
        else {}
    )
    if "nhead" in hybrid:
        out["encoder_attention_heads"] = hybrid["nhead"]
    if "use_encoder_idx" in hybrid:
        out["encoder_aifi_indices"] = list(hybrid["use_encoder_idx"])
    vit = original_config.get("DINOv3STAs", {})
    if "interaction_indexes" in vit:
        out["vit_out_indices"] = list(vit["interaction_indexes"])
    post = original_config.get("PostProcessor", {})
    if "num_top_queries" in post:
        out["num_top_queries"] = post["num_top_queries"]
    return out


def is_loss_case(inputs_or_case: Mapping[str, Any]) -> bool:
    """Training-loss golden cases carry targets (inputs) / ``"kind": "loss"`` (case.json)."""
    return "targets.labels" in inputs_or_case or inputs_or_case.get("kind") == "loss"


def targets_from_inputs(inputs: Tensors) -> list[dict[str, torch.Tensor]]:
    """``labels=`` of the model from the flat ``targets.labels/boxes/batch_index`` tensors of a loss case."""
    batch = inputs["pixel_values"].shape[0]
    index = inputs["targets.batch_index"]
    return [
        {"class_labels": inputs["targets.labels"][index == b], "boxes": inputs["targets.boxes"][index == b]}
        for b in range(batch)
    ]


def run_loss_case(model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
    """The training forward of a loss case: train mode, seeded denoising draws, the case's epoch."""
    was_training = model.training
    model.train()
    try:
        labels = targets_from_inputs(inputs)  # floating inputs are already in the run's dtype
        torch.manual_seed(int(case.get("train_seed", 0)))
        out = model(inputs["pixel_values"], labels=labels, epoch=int(case.get("epoch", 0)))
    finally:
        model.train(was_training)
    result: Tensors = {f"loss.{k}": v.detach() for k, v in out.loss_dict.items()}
    result["loss.total"] = out.loss.detach()
    result["pred_logits"], result["pred_boxes"] = out.logits.detach(), out.pred_boxes.detach()
    return result


class Deimv2Parity(ParityAdapter):
    def final_outputs(self, case: Mapping[str, Any]) -> set[str]:
        if is_loss_case(case):
            return {"loss.total", *(f"loss.{name}" for name in case.get("loss_terms", []))}
        return set(FINALS)

    def conversion_options(self, case: Mapping[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if case.get("variant"):
            options["variant"] = case["variant"]
        overrides = yml_overrides(case.get("config", {}))
        if overrides:
            options["config_overrides"] = overrides
        return options

    def run(self, model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        if is_loss_case(inputs):
            return run_loss_case(model, inputs, case)
        captured: Tensors = {}
        body = model.model
        hooks = [body.decoder.pre_bbox_head.register_forward_hook(
            lambda m, i, o: captured.setdefault("decoder.pre_bbox_head", o))]  # fmt: skip
        vit = getattr(body.backbone, "vit", None)
        if vit is not None:

            def keep_vit(module: torch.nn.Module, args: Any, output: tuple) -> None:
                for index, (patches, cls) in zip(module.out_indices, output[0], strict=True):
                    captured[f"backbone.vit.layer{index}.patch_tokens"] = patches
                    captured[f"backbone.vit.layer{index}.cls_token"] = cls

            def keep_sta(module: torch.nn.Module, args: Any, maps: tuple) -> None:
                for index, feature in enumerate(maps):
                    captured[f"backbone.sta.{index}"] = feature

            hooks += [vit.register_forward_hook(keep_vit), body.backbone.sta.register_forward_hook(keep_sta)]
        try:
            out = model(inputs["pixel_values"], output_hidden_states=True)
        finally:
            for hook in hooks:
                hook.remove()
        result: Tensors = {"pred_logits": out.logits, "pred_boxes": out.pred_boxes, **captured}
        for prefix, maps in (
            ("backbone.feat", out.backbone_hidden_states),
            ("encoder.feat", out.encoder_hidden_states),
        ):
            result.update({f"{prefix}.{i}": m for i, m in enumerate(maps)})
        result["decoder.enc_outputs_logits"] = out.enc_outputs_logits
        result["decoder.enc_topk_content"] = out.initial_queries
        result["decoder.enc_topk_bbox_unact"] = out.init_reference_points
        result["decoder.enc_topk_index"] = out.enc_topk_indices
        layers = out.decoder_hidden_states[1:]  # the first entry holds the initial queries
        result.update({f"decoder.layer{i}.hidden": h for i, h in enumerate(layers)})
        if "orig_target_sizes" in inputs:
            post = select_detections(
                out.logits, out.pred_boxes, inputs["orig_target_sizes"], model.config.num_top_queries
            )
            result.update({"post.labels": post["labels"], "post.boxes": post["boxes"], "post.scores": post["scores"],
                           "post.labels_coco_category": to_coco_category_ids(post["labels"]),
                           "post.query_indices": post["query_indices"]})  # fmt: skip
        return result

    def preprocess(self, processor: Any, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """``pixel_values`` made by ``processor`` from the case's ``image_uint8`` ([3, H, W] or [B, 3, H, W]);
        {} when the case has no raw image."""
        images = inputs.get("image_uint8")
        if images is None:
            return {}
        batch = images if images.ndim == 4 else images.unsqueeze(0)
        return {"pixel_values": processor(images=list(batch), return_tensors="pt")["pixel_values"]}

    def postprocess(
        self, processor: Any, outputs: Tensors, inputs: Tensors, case: Mapping[str, Any]
    ) -> Tensors:
        """``post.*`` from ``processor.post_process_object_detection`` on ``run``'s ``pred_logits`` /
        ``pred_boxes`` for the case's ``orig_target_sizes`` ((w, h), given to the processor as (h, w)), with
        every top-k detection kept; {} when the case has no target sizes or no detection outputs."""
        sizes = inputs.get("orig_target_sizes")
        if sizes is None or "pred_logits" not in outputs or is_loss_case(inputs):
            return {}
        detections = processor.post_process_object_detection(
            {"logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]},
            threshold=0.0,
            target_sizes=sizes.flip(1),
        )
        post = {name: torch.stack([d[name] for d in detections]) for name in ("labels", "boxes", "scores")}
        result = {f"post.{name}": value for name, value in post.items()}
        result["post.labels_coco_category"] = to_coco_category_ids(post["labels"])
        return result

    def align(self, ours: Tensors, reference: Tensors, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """Undo a legitimate re-ordering of near-tied queries/detections (same sets, other order)."""
        ours = dict(ours)
        mine, theirs = ours.get("decoder.enc_topk_index"), reference.get("decoder.enc_topk_index")
        if (
            mine is not None
            and theirs is not None
            and mine.shape == theirs.shape
            and not torch.equal(mine, theirs)
        ):
            perm = _permutation(mine, theirs)
            if perm is not None:
                for name in list(ours):
                    if name in _PER_QUERY or (name.startswith("decoder.layer") and name.endswith(".hidden")):
                        ours[name] = ours[name].gather(1, _expand(perm, ours[name]))
                ours["post.query_indices"] = _inverse(perm).gather(1, ours["post.query_indices"])
        if "post.labels" in reference and "post.labels" in ours:
            ours = _align_detections(ours, reference, inputs)
        ours.pop("post.query_indices", None)
        return ours


def _expand(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return index.reshape(index.shape + (1,) * (like.ndim - 2)).expand(*index.shape, *like.shape[2:])


def _permutation(mine: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor | None:
    """perm such that mine.gather(1, perm) == theirs, or None if the rows are not the same sets."""
    perms = []
    for row_mine, row_theirs in zip(mine, theirs, strict=True):
        position = {int(v): i for i, v in enumerate(row_mine)}
        if set(position) != {int(v) for v in row_theirs}:
            return None
        perms.append(torch.tensor([position[int(v)] for v in row_theirs]))
    return torch.stack(perms)


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    return torch.argsort(perm, dim=1)


def _align_detections(ours: Tensors, reference: Tensors, inputs: Tensors) -> Tensors:
    """Order our detections like the reference's, matching them by (query, class)."""
    if "pred_boxes" not in reference or "orig_target_sizes" not in inputs:
        return ours
    sizes = inputs["orig_target_sizes"]
    ref_pixels = center_to_corners(reference["pred_boxes"].double()) * sizes.double().repeat(1, 2).unsqueeze(
        1
    )
    num_classes = ours["pred_logits"].shape[-1]
    perms = []
    for b in range(sizes.shape[0]):
        dist = (reference["post.boxes"][b].double()[:, None, :] - ref_pixels[b][None]).abs().sum(-1)
        ref_keys = (dist.argmin(-1) * num_classes + reference["post.labels"][b]).tolist()
        our_keys = (ours["post.query_indices"][b] * num_classes + ours["post.labels"][b]).tolist()
        position = {key: i for i, key in enumerate(our_keys)}
        if set(position) != set(ref_keys) or our_keys == ref_keys:
            return ours
        perms.append(torch.tensor([position[key] for key in ref_keys]))
    perm = torch.stack(perms)
    for name in (
        "post.labels",
        "post.scores",
        "post.labels_coco_category",
        "post.query_indices",
        "post.boxes",
    ):
        ours[name] = ours[name].gather(1, _expand(perm, ours[name]))
    return ours
