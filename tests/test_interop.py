"""Registration with transformers, strict loading, and weights shared with transformers' built-in ViTPose (folders loading
without the package: test_sharing.py)."""

import json
import subprocess
import sys

import pytest
import torch
from support.models import randomize, tamper_weights, tiny_config_kwargs
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoModel,
    AutoModelForPoseEstimation,
    VitPoseBackboneConfig,
    VitPoseForPoseEstimation,
)
from transformers import VitPoseConfig as BuiltinConfig

from vitpose_hf import (
    VitPoseBackbone,
    VitPoseConfig,
    VitPoseModel,
    export_to_transformers,
)


def test_auto_classes_resolve_to_ours(tmp_path):
    VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is VitPoseConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is VitPoseModel
    assert type(AutoModelForPoseEstimation.from_pretrained(tmp_path)) is VitPoseModel
    # AutoBackbone.from_pretrained asks the Hub whether a repo exists even for local folders, so go through the config.
    assert type(AutoBackbone.from_config(AutoConfig.from_pretrained(tmp_path))) is VitPoseBackbone
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "vitpose_hf"
    assert saved["auto_map"]["AutoModel"].endswith("VitPoseModel")
    assert (tmp_path / "model.safetensors").exists()


def builtin_model(simple: bool, experts: int = 1) -> VitPoseForPoseEstimation:
    backbone = VitPoseBackboneConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_experts=experts, part_features=8,
        out_indices=[2],
    )
    labels = dict(enumerate(VitPoseConfig().keypoint_heads[0]["keypoints"]))
    config = BuiltinConfig(backbone_config=backbone, use_simple_decoder=simple, id2label=labels)
    return randomize(VitPoseForPoseEstimation(config)).eval()


def test_importing_leaves_stock_vitpose_alone(tmp_path):
    builtin_model(simple=True).save_pretrained(tmp_path)
    assert type(AutoModelForPoseEstimation.from_pretrained(tmp_path)) is VitPoseForPoseEstimation
    assert type(AutoConfig.from_pretrained(tmp_path)) is BuiltinConfig


@pytest.mark.parametrize("simple,experts", [(True, 1), (False, 1), (False, 3)])
def test_loads_builtin_checkpoints(tmp_path, simple, experts):
    reference = builtin_model(simple, experts)
    reference.save_pretrained(tmp_path)
    ours = VitPoseModel.from_pretrained(tmp_path).eval()
    assert ours.config.decoder == ("simple" if simple else "classic")
    assert ours.config.head_names == ["coco"] and ours.config.num_experts == experts
    pixels = torch.randn(2, 3, 256, 192)
    for dataset in range(experts):
        index = torch.full((2,), dataset)
        expected = reference(pixels, dataset_index=index).heatmaps
        assert torch.max(torch.abs(ours(pixels, dataset_index=index).heatmaps - expected)) <= 1e-4


@pytest.mark.parametrize("decoder,experts", [("simple", 1), ("classic", 1), ("classic", 3)])
def test_exports_to_builtin(tmp_path, decoder, experts):
    heads = ["coco", "aic", "mpii"] if experts > 1 else ["coco"]
    config = VitPoseConfig(
        **tiny_config_kwargs(decoder=decoder, num_experts=experts, part_features=8, keypoint_heads=heads, decoder_channels=256)
    )
    ours = randomize(VitPoseModel(config)).eval()
    export_to_transformers(ours, tmp_path)
    stock = AutoModelForPoseEstimation.from_pretrained(tmp_path).eval()
    assert type(stock) is VitPoseForPoseEstimation
    pixels = torch.randn(2, 3, 256, 192)
    for dataset in range(experts):  # the exported COCO head, behind each expert
        index = torch.full((2,), dataset)
        expected = ours.heads[0](ours.vit(pixels, ours.expert_groups(index)).feature_maps)
        assert torch.max(torch.abs(stock(pixels, dataset_index=index).heatmaps - expected)) <= 1e-4


def test_export_refuses_what_the_builtin_cannot_hold(tmp_path):
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs(patch_stride=8)))
    with pytest.raises(ValueError, match="stride 16"):
        export_to_transformers(model, tmp_path / "out")


def test_auto_image_processor_gives_ours(tmp_path):
    from transformers import AutoImageProcessor

    from vitpose_hf import VitPoseImageProcessor
    from vitpose_hf.defaults import EMBEDDED_MODEL_DIR

    VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).save_pretrained(tmp_path)
    VitPoseImageProcessor(padding=1.4).save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is VitPoseImageProcessor and loaded.padding == 1.4
    assert type(AutoImageProcessor.from_pretrained(EMBEDDED_MODEL_DIR)) is VitPoseImageProcessor


def test_builtin_processor_checkpoints_keep_transformers_class(tmp_path):
    """Importing vitpose_hf must not change what stock transformers loads for its own checkpoints."""
    from transformers import AutoImageProcessor, pipeline
    from transformers.models.vitpose import VitPoseImageProcessorPil

    from vitpose_hf import VitPoseImageProcessor

    export_to_transformers(randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs(decoder="simple")))), tmp_path)
    VitPoseImageProcessorPil(size={"height": 256, "width": 192}).save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded).__module__.startswith("transformers.models.vitpose.")
    assert type(loaded).__name__ in ("VitPoseImageProcessor", "VitPoseImageProcessorPil")
    # Ours only when asked: the pipeline decodes built-in checkpoints with our processor and our model class.
    pose = pipeline("keypoint-detection", model=str(tmp_path), device="cpu")
    assert isinstance(pose.image_processor, VitPoseImageProcessor) and isinstance(pose.model, VitPoseModel)
    assert pose.image_processor.size == {"height": 256, "width": 192}


def test_stock_transformers_resolves_the_same_with_and_without_the_package(tmp_path):
    export_to_transformers(VitPoseModel(VitPoseConfig(**tiny_config_kwargs(decoder="simple"))), tmp_path)
    from transformers.models.vitpose import VitPoseImageProcessorPil

    VitPoseImageProcessorPil().save_pretrained(tmp_path)
    script = f"""
import sys
from transformers import AutoImageProcessor
before = type(AutoImageProcessor.from_pretrained({str(tmp_path)!r}))
import vitpose_hf
after = type(AutoImageProcessor.from_pretrained({str(tmp_path)!r}))
assert before is after, (before, after)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("drop,extra,named", [
    (["backbone.encoder.layer.1.mlp.fc1.bias"], [], "backbone.encoder.layer.1.mlp.fc1.bias"),
    ([], ["backbone.stray.weight"], "backbone.stray.weight"),
])
def test_builtin_checkpoint_with_a_missing_or_extra_weight_is_an_error_naming_it(tmp_path, drop, extra, named):
    from vitpose_hf.training.initialization import initialize_model

    builtin_model(simple=True).save_pretrained(tmp_path)
    tamper_weights(tmp_path, drop, extra)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        VitPoseModel.from_pretrained(tmp_path)
    config = VitPoseConfig(**tiny_config_kwargs(decoder="simple"))
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):  # the --init-from path of training
        initialize_model(config, tmp_path)


def test_folder_whose_model_type_does_not_match_its_weights_is_an_error(tmp_path):
    VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_type"] = "vitpose"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type 'vitpose'.*does not match its weights"):
        VitPoseModel.from_pretrained(tmp_path)
