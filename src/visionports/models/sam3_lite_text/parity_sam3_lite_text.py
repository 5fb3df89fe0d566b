"""How the parity tool runs SAM3-LiteText golden cases (text-encoder weights cases and tokenizer cases)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from ...parity import ParityReport, TensorCheck
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
        variant = {"MobileCLIP-S0": "s0", "MobileCLIP-S1": "s1", "MobileCLIP2-L": "l"}.get(
            case.get("variant", "")
        )
        config = case.get("config", {})
        overrides: dict[str, Any] = {}
        if "n_heads" in config:
            overrides["num_attention_heads"] = int(config["n_heads"])
        if "context_length" in config:
            overrides["context_length"] = int(config["context_length"])
        return {"variant": variant, "config_overrides": overrides}

    def tolerance(self, case: Mapping[str, Any], label: str) -> tuple[dict[str, float], float, float]:
        return {}, float(case.get("tolerances", {}).get(f"{label}_max_abs_diff", 1e-5)), 0.0

    def run(self, model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        if "input_ids" not in inputs:  # detector cases: not ported yet, their outputs are reported missing
            return {}
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
