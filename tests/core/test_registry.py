"""Adding a family is one folder and one registry line: a toy family goes through convert, the Auto classes,
the CLI's choices and the parity tool's four stages without any other edit."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from transformers import AutoModel

from visionports.cli import main
from visionports.core import registry
from visionports.core.parity import run_parity

TOY_FILES = {
    "__init__.py": '"""A toy family: one linear layer."""\n',
    "configuration_toy.py": """
        from transformers import PreTrainedConfig


        class ToyConfig(PreTrainedConfig):
            model_type = "visionports_toy"

            def __init__(self, width: int = 4, **kwargs):
                self.width = width
                super().__init__(**kwargs)
    """,
    "modeling_toy.py": """
        from torch import nn
        from transformers import PreTrainedModel

        from .configuration_toy import ToyConfig


        class ToyModel(PreTrainedModel):
            config_class = ToyConfig
            main_input_name = "pixel_values"

            def __init__(self, config: ToyConfig):
                super().__init__(config)
                self.linear = nn.Linear(config.width, config.width)
                self.post_init()

            def forward(self, pixel_values):
                return self.linear(pixel_values)
    """,
    "convert_toy.py": """
        from visionports.core.key_mapping import KeyMapping, Rename

        from .configuration_toy import ToyConfig


        def infer_config(state_dict, variant=None, **overrides):
            return ToyConfig(width=state_dict["fc.weight"].shape[0], **overrides)


        def convert_state_dict(state_dict, config):
            return KeyMapping([Rename(r"^fc\\.", "linear.")]).apply(state_dict)
    """,
    "parity_toy.py": """
        from visionports.core.parity import ParityAdapter


        class ToyParity(ParityAdapter):
            def run(self, model, inputs, case):
                return {"output": model(inputs["pixel_values"])}
    """,
    "family.py": """
        from visionports.core.registry import ModelFamily

        from .configuration_toy import ToyConfig
        from .convert_toy import convert_state_dict, infer_config
        from .modeling_toy import ToyModel
        from .parity_toy import ToyParity

        FAMILY = ModelFamily(
            name="toy",
            model_class=ToyModel,
            infer_config=infer_config,
            convert_state_dict=convert_state_dict,
            parity=ToyParity(),
            auto_models=(("AutoModel", ToyConfig, ToyModel),),
        )
    """,
}


@pytest.fixture
def toy_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "toy_family_pkg"
    package.mkdir()
    for name, text in TOY_FILES.items():
        (package / name).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._FAMILY_MODULES, "toy", "toy_family_pkg.family")  # the one registry line
    yield tmp_path
    for module in [m for m in sys.modules if m.startswith("toy_family_pkg")]:
        del sys.modules[module]


def _toy_case(folder: Path) -> Path:
    """A golden case of the 'original': a plain Linear named fc."""
    torch.manual_seed(0)
    original = torch.nn.Linear(4, 4)
    case = folder / "case"
    case.mkdir()
    torch.save(
        {"model": {"fc.weight": original.weight.data, "fc.bias": original.bias.data}}, case / "checkpoint.pth"
    )
    pixels = torch.randn(2, 4)
    save_file({"pixel_values": pixels}, str(case / "inputs.safetensors"))
    save_file({"output": original(pixels).detach()}, str(case / "outputs.safetensors"))
    (case / "case.json").write_text(json.dumps({"case": "toy", "outputs": [{"name": "output"}]}))
    return case


def test_a_toy_family_needs_one_folder_and_one_registry_line(toy_family: Path) -> None:
    assert "toy" in registry.family_names()
    family = registry.get_family("toy")
    registry.register_with_transformers(family)

    case = _toy_case(toy_family)
    out = toy_family / "converted"
    runner = CliRunner()
    converted = runner.invoke(main, ["convert", "toy", str(case / "checkpoint.pth"), str(out)])
    assert converted.exit_code == 0, converted.output
    loaded = AutoModel.from_pretrained(out)
    assert type(loaded).__name__ == "ToyModel" and loaded.config.width == 4

    report = run_parity(family, case)
    assert report.ok, report.render()
    assert report.stages["converted"] == ["float32"] and report.stage_passed("reloaded")
    checked = runner.invoke(main, ["parity", "toy", str(case)])
    assert checked.exit_code == 0 and "PARITY OK" in checked.output, checked.output


def test_every_registered_family_is_complete() -> None:
    for family in registry.all_families():
        assert family.tasks, family.name  # some CLI verb takes its folders
        if not family.converts:  # reuses transformers' own folders (the packed encoders)
            assert family.config_classes and family.model_class is None, family.name
            continue
        assert family.auto_models and family.model_class is not None, family.name
        assert family.parity is not None and family.auto_model.startswith("AutoModel"), family.name
        auto_names = {auto for auto, _, _ in family.auto_models}
        assert family.auto_model in auto_names, family.name


def test_a_folder_config_finds_its_family() -> None:
    from transformers import DINOv3ViTConfig, Siglip2Config

    from visionports.models.deimv2 import Deimv2Config
    from visionports.models.videomt import VideomtConfig

    assert registry.family_for_config(Deimv2Config()).name == "deimv2"
    assert registry.family_for_config(VideomtConfig()).name == "videomt"
    assert registry.family_for_config(Siglip2Config()).name == "packed"
    assert registry.family_for_config(DINOv3ViTConfig()).name == "packed"
    assert [f.name for f in registry.families_for_task("detect")] == ["deimv2"]
    assert "packed" not in registry.converting_family_names()
    with pytest.raises(ValueError, match="no visionports family takes a 'bert' model"):
        from transformers import BertConfig

        registry.family_for_config(BertConfig())
