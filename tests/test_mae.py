"""MAE pre-training: exact masking share, loss on masked patches only, targets aligned with what each token sees, the
encoder sees only visible patches, the saved encoder starts a VitPoseModel, resume, and bad input."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from safetensors.torch import load_file
from support.models import tiny_config_kwargs
from transformers import ViTMAEConfig
from transformers.models.vit_mae.modeling_vit_mae import (
    ViTMAEDecoder,
    ViTMAEEmbeddings,
    ViTMAEForPreTraining,
    build_2d_sinusoidal_position_embedding,
)

from vitpose_hf import VitPoseConfig, VitPoseModel
from vitpose_hf.modeling_vitpose import VitPoseBackbone
from vitpose_hf.training.config import ConfigError
from vitpose_hf.training.initialization import initialize_model
from vitpose_hf.training.mae import (
    MAESection,
    MAETask,
    VitPoseMaskedAutoencoder,
    load_mae_config,
    masked_patch_loss,
    patchify,
    pretrain,
    random_masking,
    unpatchify,
    warmup_cosine,
)

REPO = Path(__file__).resolve().parents[1]
TINY_DECODER = {"decoder_hidden_size": 32, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
                "decoder_intermediate_size": 64}


def tiny_mae(**mae) -> VitPoseMaskedAutoencoder:
    config = VitPoseConfig(**tiny_config_kwargs(image_size=[64, 48]))
    return VitPoseMaskedAutoencoder(VitPoseBackbone(config), MAESection(**{**TINY_DECODER, **mae})).eval()


def tiny_recipe(tmp_path: Path, **overrides) -> dict:
    recipe = {
        "output_dir": str(tmp_path / "run"), "seed": 0, "per_device_batch_size": 4, "max_steps": 4, "num_epochs": None,
        "num_workers": 0, "logging_steps": 1, "checkpointing_steps": 2, "checkpoints_total_limit": 3,
        "eval_samples": 6, "num_reconstruction_images": 3,
        "model": {"variant": "vitpose-small", "config_overrides": {**tiny_config_kwargs(), "image_size": [64, 48],
                                                                   "drop_path_rate": 0.1}},
        "mae": TINY_DECODER,
        "optimization": {"warmup": 1, "warmup_unit": "steps", "learning_rate": 1e-3},
        "datasets": [{
            "name": "synthetic", "annotation_file": str(tmp_path / "data" / "annotations.json"),
            "image_root": str(tmp_path / "data" / "images"),
            "synthetic": {"num_images": 8, "seed": 0, "image_size": [96, 96], "max_people": 2},
        }],
    }
    recipe.update(overrides)
    return recipe


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """In-process runs create an `Accelerator`; leave no shared accelerate state to the tests that follow."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def load_script():
    spec = importlib.util.spec_from_file_location("pretrain_mae_script", REPO / "scripts" / "pretrain_mae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Masking ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask_ratio, num_patches", [(0.75, 192), (0.75, 108), (0.75, 12), (0.5, 7), (0.9, 30)])
def test_masking_keeps_exactly_the_configured_share(mask_ratio, num_patches):
    noise = torch.rand(16, num_patches)
    ids_keep, mask, ids_restore = random_masking(noise, mask_ratio)
    masked = int(round(mask_ratio * num_patches))
    assert mask.shape == (16, num_patches)
    assert (mask.sum(dim=1) == masked).all()  # the same count in every sample
    assert ids_keep.shape == (16, num_patches - masked)
    for row in range(16):
        visible = set(ids_keep[row].tolist())
        assert visible == set(torch.nonzero(mask[row] == 0).flatten().tolist())
        # The visible patches are those with the lowest noise.
        assert visible == set(torch.argsort(noise[row])[: num_patches - masked].tolist())
    assert torch.equal(torch.argsort(ids_restore, dim=1)[:, : num_patches - masked], ids_keep)


def test_masking_matches_transformers_vitmae():
    config = ViTMAEConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                          image_size=64, patch_size=16, mask_ratio=0.75)
    reference = ViTMAEEmbeddings(config)
    noise = torch.rand(3, 16)
    sequence = torch.arange(16, dtype=torch.float32).view(1, 16, 1).expand(3, -1, -1)
    kept, expected_mask, expected_restore = reference.random_masking(sequence, noise)
    ids_keep, mask, ids_restore = random_masking(noise, 0.75)
    assert torch.equal(ids_keep.float(), kept[..., 0])
    assert torch.equal(mask, expected_mask)
    assert torch.equal(ids_restore, expected_restore)


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.25])
def test_mask_ratio_outside_the_open_interval_fails_before_training(tmp_path, ratio, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tmp_path)))
    with pytest.raises(ConfigError, match=r"mae\.mask_ratio must lie strictly between 0 and 1"):
        load_mae_config(path, dotted=[f"mae.mask_ratio={ratio}"])
    assert load_script().main(["--config", str(path), "--mask-ratio", str(ratio)]) == 2
    assert "mae.mask_ratio" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tmp_path)))
    with pytest.raises(ConfigError, match=r"Unknown config key mae\.mask_ration"):
        load_mae_config(path, dotted=["mae.mask_ration=0.5"])
    with pytest.raises(ConfigError, match="window attention"):
        load_mae_config(path, dotted=["model.config_overrides.attention_type=window"])


# Loss ---------------------------------------------------------------------------------------------------------------
def test_loss_is_computed_on_masked_patches_only():
    # One crop of four 2-value patches; patches 1 and 3 are hidden.
    target = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]])
    predictions = torch.tensor([[[1.0, 1.0], [0.0, 2.0], [5.0, 5.0], [3.0, -1.0]]], requires_grad=True)
    mask = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    # Patch 1: ((0-1)^2 + (2-1)^2) / 2 = 1; patch 3: ((3-1)^2 + (-1-1)^2) / 2 = 4; mean over the hidden: 2.5.
    # The visible patch 2 is off by 5 everywhere and must not count.
    loss = masked_patch_loss(predictions, target, mask, norm_pix_loss=False)
    assert loss.item() == pytest.approx(2.5)
    loss.backward()
    assert predictions.grad[0, [0, 2]].abs().sum() == 0
    assert predictions.grad[0, [1, 3]].abs().sum() > 0


def test_normalised_pixel_loss_by_hand():
    # Patch [0, 2]: mean 1, unbiased variance 2 -> [-1, 1] / sqrt(2 + 1e-6). Patch [4, 0]: mean 2, variance 8 ->
    # [2, -2] / sqrt(8 + 1e-6). Both are +-0.70711 (to 1e-7).
    target = torch.tensor([[[9.0, 9.0], [0.0, 2.0], [9.0, 9.0], [4.0, 0.0]]])
    predictions = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.70711, 0.70711]]])
    mask = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    # Patch 1: (0.5 + 0.5) / 2 = 0.5; patch 3: (0 + 1.41421^2) / 2 = 1.0; mean 0.75.
    loss = masked_patch_loss(predictions, target, mask, norm_pix_loss=True)
    assert loss.item() == pytest.approx(0.75, abs=1e-4)


# Patches ------------------------------------------------------------------------------------------------------------
def test_patchify_matches_transformers_vitmae_and_inverts():
    pixels = torch.randn(2, 3, 64, 48)
    reference_self = SimpleNamespace(config=SimpleNamespace(patch_size=16, num_channels=3))
    expected = ViTMAEForPreTraining.patchify(reference_self, pixels, interpolate_pos_encoding=True)  # non-square
    patches = patchify(pixels, 16)
    assert torch.equal(patches, expected)
    assert torch.equal(unpatchify(patches, (64, 48), 16), pixels)


def test_each_target_patch_is_what_its_token_sees():
    """ViTPose pads its patch embedding by 2 pixels: a token's target is its own receptive field."""
    model = tiny_mae()
    embeddings = model.backbone.vit.embeddings
    assert model.config.patch_embedding_padding == 2
    pixels = torch.randn(2, 3, 64, 48)
    tokens, _ = embeddings(pixels)
    tokens = tokens - embeddings.position_embeddings
    weight = embeddings.projection.weight  # (C_out, C, kh, kw) -> the (row, column, channel) patch order
    flat = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    projected = model.patchify(pixels) @ flat.T + embeddings.projection.bias
    assert torch.allclose(tokens, projected, atol=1e-5)
    # And by hand: token (1, 2) covers rows 14..29 and columns 30..45 of the image.
    padded = F.pad(pixels, (2, 2, 2, 2))
    by_hand = padded[:, :, 16:32, 32:48].permute(0, 2, 3, 1).reshape(2, -1)
    assert torch.equal(model.patchify(pixels)[:, 1 * 3 + 2], by_hand)


# The model ----------------------------------------------------------------------------------------------------------
def test_encoder_sees_only_the_visible_patches():
    model = tiny_mae()
    pixels = torch.randn(2, 3, 64, 48)
    noise = torch.rand(2, 12)
    with torch.no_grad():
        first = model(pixels, noise)
        assert (first.mask.sum(dim=1) == 9).all()
        hidden = model.unpatchify(first.mask[..., None].expand(-1, -1, 16 * 16 * 3), (64, 48))
        changed = pixels + 5 * hidden * torch.randn_like(pixels)  # new content in every hidden patch only
        second = model(changed, noise)
    assert torch.equal(first.logits, second.logits)
    assert first.loss.item() != pytest.approx(second.loss.item())


def test_decoder_is_transformers_vitmae_decoder_on_the_pose_grid():
    model = tiny_mae()
    assert isinstance(model.decoder, ViTMAEDecoder)
    expected = build_2d_sinusoidal_position_embedding(4, 3, 32, cls_token=True)
    assert torch.equal(model.decoder.decoder_pos_embed[0], expected)
    assert not model.decoder.decoder_pos_embed.requires_grad
    model.initialize_encoder()
    position = model.backbone.vit.embeddings.position_embeddings
    assert torch.allclose(position[0], build_2d_sinusoidal_position_embedding(4, 3, 32))
    assert not position.requires_grad


@pytest.mark.parametrize("image_size", [[64, 48], [128, 96]])
def test_saved_encoder_starts_a_vitpose_model_with_every_backbone_weight(tmp_path, image_size):
    mae = tiny_mae()
    mae.initialize_encoder()
    config = load_mae_config(None, {"datasets": tiny_recipe(tmp_path)["datasets"]})
    MAETask(config).save_final(mae, tmp_path / "encoder", {"eval_loss": 0.5}, "pretrain")
    card = (tmp_path / "encoder" / "README.md").read_text()
    assert "75% of the patches hidden" in card and "loss: 0.5000" in card and "model.init_from" in card
    assert "pipeline_tag" not in card  # a backbone: no keypoint-detection widget
    saved = json.loads((tmp_path / "encoder" / "config.json").read_text())
    assert saved["model_type"] == "vitpose_hf" and saved["architectures"] == ["VitPoseBackbone"]
    assert set(load_file(tmp_path / "encoder" / "model.safetensors")) == {f"vit.{k}" for k in mae.backbone.vit.state_dict()}

    target = VitPoseConfig(**tiny_config_kwargs(image_size=image_size, keypoint_heads=["coco"]))
    model, report = initialize_model(target, tmp_path / "encoder")
    backbone_keys = {k for k in model.state_dict() if k.startswith("vit.")}
    assert set(report.loaded) == backbone_keys  # every backbone weight came from the encoder
    assert all(k.startswith("heads.") for k in report.fresh)  # nothing but the head starts fresh
    source = mae.backbone.vit.state_dict()
    for key, value in model.vit.state_dict().items():
        if key == "embeddings.position_embeddings" and image_size != [64, 48]:
            assert value.shape[1] == 8 * 6  # resampled to the larger grid
            continue
        assert torch.equal(value, source[key]), key
    assert isinstance(model, VitPoseModel)


def test_schedule_is_linear_warmup_then_half_cosine():
    # 10 warmup steps of 100, then cosine from 1 to 0.1 over the remaining 90.
    assert [warmup_cosine(s, 10, 100, 0.1) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert warmup_cosine(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi / 2) = 0
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)


# The run ------------------------------------------------------------------------------------------------------------
def test_reconstruction_evaluation_split_over_processes_equals_one_process(monkeypatch):
    from vitpose_hf.training.mae import evaluate_reconstruction

    model = tiny_mae()
    crops = torch.randn(7, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    noise = torch.rand((7, model.grid[0] * model.grid[1]), generator=torch.Generator().manual_seed(3))
    # Reference: every crop alone with its own row of the seeded noise, the losses averaged.
    with torch.no_grad():
        expected = float(np.mean([float(model(crops[i:i + 1], noise[i:i + 1]).loss) for i in range(7)]))
    alone, _ = evaluate_reconstruction(model, crops, 3, 2, torch.device("cpu"))
    assert alone == pytest.approx(expected, abs=1e-6)

    # Two processes, played in turn: each first hands its piece to the "collective", then both get every piece back.
    pieces: dict[int, list] = {}

    def split(rank: int, gather) -> tuple[float, object]:
        monkeypatch.setattr("accelerate.utils.gather_object", gather)
        return evaluate_reconstruction(model, crops, 3, 2, torch.device("cpu"), num_pictures=2,
                                       process_state=SimpleNamespace(num_processes=2, process_index=rank))

    class Handed(Exception):
        pass

    for rank in (0, 1):
        def hand_over(pairs, rank=rank):
            pieces[rank] = pairs
            raise Handed

        with pytest.raises(Handed):
            split(rank, hand_over)
    assert [count for rank in (0, 1) for _, (_, count) in pieces[rank]] == [3, 4]  # crops 0-2 and 3-6
    outcomes = [split(rank, lambda pairs: pieces[0] + pieces[1]) for rank in (0, 1)]
    for loss, _ in outcomes:
        assert loss == pytest.approx(expected, abs=1e-6)
    assert outcomes[0][1] is not None and outcomes[1][1] is None  # the picture (crops 0-1) is the main process's


def test_pretraining_resumes_exactly_and_draws_reconstructions(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tmp_path)))
    script = load_script()
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert script.main(["--config", str(path), "--output-dir", str(straight)]) == 0

    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints" / "checkpoint-2", resumed / "checkpoints" / "checkpoint-2")
    assert script.main(["--config", str(path), "--output-dir", str(resumed), "--resume-from-checkpoint", "latest"]) == 0
    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (resumed / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [3, 4]
    straight_log = [json.loads(line) for line in (straight / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] == pytest.approx(straight_log[-1]["loss"], abs=1e-7)

    picture = Image.open(straight / "reconstructions" / "step-0000004.png")
    gap = 4
    assert picture.size == (3 * 48 + 2 * gap, 3 * 64 + 2 * gap)  # 3 crops x (crop | masked | reconstruction)
    results = json.loads((straight / "eval_results.json").read_text())
    assert np.isfinite(results["eval_loss"])


def test_dataset_without_usable_boxes_fails_before_training(tmp_path):
    images = tmp_path / "empty" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(images / "a.jpg")
    annotations = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 32, "height": 32}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20], "area": 200,
                         "iscrowd": 0, "num_keypoints": 0, "keypoints": [0] * 51}],
        "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(17)], "skeleton": []}],
    }
    (tmp_path / "empty" / "annotations.json").write_text(json.dumps(annotations))
    recipe = tiny_recipe(tmp_path)
    recipe["datasets"] = [{"name": "empty", "annotation_file": str(tmp_path / "empty" / "annotations.json"),
                           "image_root": str(images)}]
    config = load_mae_config(None, recipe)
    with pytest.raises(ValueError, match=r"Dataset 'empty' .* has no usable person annotation"):
        pretrain(config)
    assert not (tmp_path / "run" / "checkpoints").exists()
