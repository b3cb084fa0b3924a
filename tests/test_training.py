"""The training script: recipe (layer decay, schedule), config errors, NaN stop, exact resume after kill -9, two
processes with several datasets, and initialisation from every kind of checkpoint."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from support.models import tiny_config_kwargs
from support.original import OriginalTopDown, original_model, save_original, tiny
from support.training import ENV, REPO, TRAIN, run_train, tiny_recipe, write_recipe

from vitpose_hf import VitPoseConfig, VitPoseImageProcessor, VitPoseModel
from vitpose_hf.convert import original_key_to_ours
from vitpose_hf.evaluation import evaluate_keypoint_dataset
from vitpose_hf.training.config import ConfigError, load_training_config
from vitpose_hf.training.initialization import initialize_model
from vitpose_hf.training.optim import (
    LAYER_DECAY_RATES,
    build_optimizer_and_scheduler,
    parameter_settings,
)


# The recipe ---------------------------------------------------------------------------------------------------------
def original_layer_id(name: str, num_layers: int) -> int:
    """The original `get_num_layer_for_vit` (ViTPose's LayerDecayOptimizerConstructor)."""
    if name in ("backbone.cls_token", "backbone.mask_token", "backbone.pos_embed"):
        return 0
    if name.startswith("backbone.patch_embed"):
        return 0
    if name.startswith("backbone.blocks"):
        return int(name.split(".")[2]) + 1
    return num_layers - 1


@pytest.mark.parametrize("size", ["small", "base", "large", "huge"])
def test_layer_decay_groups_match_the_original_constructor(size):
    config = VitPoseConfig.from_variant(f"vitpose-{size}")
    depth, rate, weight_decay = config.num_hidden_layers, LAYER_DECAY_RATES[size], 0.1
    with torch.device("meta"):
        ours = VitPoseModel(config)
        original = OriginalTopDown(["coco"], dim=config.hidden_size, depth=depth,
                                   num_heads=config.num_attention_heads, channels=256, tokens=config.token_grid())
    num_layers = depth + 2
    expected = {}
    for name, parameter in original.named_parameters():
        layer = original_layer_id(name, num_layers)
        no_decay = parameter.ndim == 1 or name.endswith(".bias") or "pos_embed" in name
        expected[original_key_to_ours(name)] = (rate ** (num_layers - layer - 1), 0.0 if no_decay else weight_decay)
    settings = parameter_settings(ours, weight_decay, rate)
    assert set(settings) == set(expected)
    for name, setting in settings.items():
        assert setting.lr_scale == pytest.approx(expected[name][0], rel=1e-12), name
        assert setting.weight_decay == expected[name][1], name

    # The optimizer built from them gives every parameter its lr and decay.
    optimizer, _ = build_optimizer_and_scheduler(ours, 5e-4, weight_decay, (0.9, 0.999), rate, 0, 1.0, [], 0.1)
    names = {id(p): n for n, p in ours.named_parameters()}
    seen = 0
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            name = names[id(parameter)]
            assert group["lr"] == pytest.approx(5e-4 * expected[name][0], rel=1e-12), name
            assert group["weight_decay"] == expected[name][1], name
            seen += 1
    assert seen == len(expected)


def test_schedule_is_linear_warmup_then_step_decay():
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs()))
    optimizer, scheduler = build_optimizer_and_scheduler(model, 1.0, 0.1, (0.9, 0.999), 1.0, 10, 0.001, [15, 18], 0.1)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # mmcv's linear warmup: lr * (1 - (1 - i / warmup) * (1 - ratio)), then x0.1 at each milestone.
    for i, lr in enumerate(lrs):
        expected = 1 - (1 - i / 10) * (1 - 0.001) if i < 10 else 1.0
        expected *= 0.1 ** sum(i >= m for m in (15, 18))
        assert lr == pytest.approx(expected, rel=1e-9), i


def test_partial_fine_tuning_freezes_what_table_5_says(tmp_path):
    from vitpose_hf.training.optim import apply_freeze

    for freeze, frozen_part in (("attention", ".attention."), ("ffn", ".mlp."), ("backbone", "vit.")):
        model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs()))
        apply_freeze(model, freeze)
        for name, parameter in model.named_parameters():
            should_freeze = frozen_part in name if freeze != "backbone" else name.startswith("vit.")
            assert parameter.requires_grad != should_freeze, (freeze, name)


def test_each_head_learns_only_from_its_own_samples():
    config = VitPoseConfig(**tiny_config_kwargs(keypoint_heads=["coco", "mpii"]))
    height, width = config.heatmap_size
    pixel_values = torch.randn(3, 3, 256, 192)
    dataset_index = torch.tensor([0, 1, 0])

    def head_grads(mpii_labels: torch.Tensor) -> list[list[torch.Tensor]]:
        torch.manual_seed(0)
        model = VitPoseModel(config).train()
        labels = torch.zeros(3, 17, height, width)
        labels[[0, 2]] = 0.5
        labels[1, :16] = mpii_labels
        model(pixel_values, dataset_index=dataset_index, labels=labels).loss.backward()
        return [[p.grad.clone() for p in head.parameters()] for head in model.heads]

    first = head_grads(torch.zeros(16, height, width))
    second = head_grads(torch.rand(16, height, width))
    assert all(torch.equal(a, b) for a, b in zip(first[0], second[0]))  # the coco head never sees mpii targets
    assert any(not torch.equal(a, b) for a, b in zip(first[1], second[1]))


# Config errors ------------------------------------------------------------------------------------------------------
def test_unknown_key_fails_before_training_and_names_it(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["optimization"]["lerning_rate"] = 1e-3
    path = write_recipe(tmp_path, recipe)
    with pytest.raises(ConfigError, match=r"optimization\.lerning_rate"):
        load_training_config(path)
    recipe = tiny_recipe(tmp_path)
    recipe["datasets"][0]["anotation_file"] = "x.json"
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.anotation_file"):
        load_training_config(write_recipe(tmp_path, recipe, "typo_in_dataset.yaml"))
    result = run_train("--config", str(path))
    assert result.returncode == 2
    assert "optimization.lerning_rate" in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_dataset_path_fails_before_training_and_names_it(tmp_path):
    recipe = tiny_recipe(tmp_path)
    missing = str(tmp_path / "nowhere" / "person_keypoints.json")
    recipe["datasets"][0].update(annotation_file=missing, synthetic=None)
    result = run_train("--config", str(write_recipe(tmp_path, recipe)))
    assert result.returncode == 2
    assert "datasets[0].annotation_file" in result.stderr and missing in result.stderr
    assert not (tmp_path / "run").exists()


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    recipe = tiny_recipe(tmp_path, checkpointing_steps=1, max_steps=5)
    recipe["optimization"].update(learning_rate=1e30, warmup_steps=0, max_grad_norm=None)
    for dataset in recipe["datasets"]:
        dataset.pop("val_annotation_file"), dataset.pop("val_image_root"), dataset.pop("val_synthetic")
    result = run_train("--config", str(write_recipe(tmp_path, recipe)))
    assert result.returncode == 3, result.stderr[-2000:]
    message = next(line for line in result.stderr.splitlines() if line.startswith("Training stopped"))
    assert "Non-finite loss" in message and "at step 2" in message
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-1"
    assert f"last good checkpoint is {checkpoint}" in message
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint-1"]
    weights = load_file(checkpoint / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (tmp_path / "run" / "final").exists()


# Checkpoint and resume ----------------------------------------------------------------------------------------------
def test_kill_9_and_resume_equals_an_uninterrupted_run(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=60, checkpointing_steps=5, per_device_batch_size=8)
    for dataset in recipe["datasets"]:  # evaluation is not part of what is compared
        dataset.pop("val_annotation_file"), dataset.pop("val_image_root"), dataset.pop("val_synthetic")
    path = write_recipe(tmp_path, recipe)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = run_train("--config", str(path), "--output-dir", str(straight))
    assert result.returncode == 0, result.stderr[-2000:]

    process = subprocess.Popen([sys.executable, str(TRAIN), "--config", str(path), "--output-dir", str(resumed)],
                               cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (resumed / "checkpoints" / "checkpoint-10").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (resumed / "final").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in (resumed / "checkpoints").glob("checkpoint-*"))
    assert killed_at < 60

    result = run_train("--config", str(path), "--output-dir", str(resumed), "--resume-from-checkpoint", "latest")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Resumed from {resumed / 'checkpoints' / f'checkpoint-{killed_at}'}" in result.stderr
    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) <= 1e-6
    last = [json.loads(line) for line in (straight / "train_log.jsonl").read_text().splitlines()][-1]
    resumed_log = [json.loads(line) for line in (resumed / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in resumed_log] == list(range(1, 61))  # the redone steps are logged once
    last_resumed = resumed_log[-1]
    assert last["step"] == last_resumed["step"] == 60
    assert last["loss"] == pytest.approx(last_resumed["loss"], abs=1e-6)


# Several processes, several datasets --------------------------------------------------------------------------------
def test_two_processes_train_two_datasets_to_the_end(tmp_path):
    recipe = tiny_recipe(tmp_path, datasets=("coco", "mpii"), max_steps=4, checkpointing_steps=2, eval_steps=2,
                         report_to="tensorboard")
    recipe["datasets"][0]["probability"] = 0.5
    recipe["datasets"][1]["probability"] = 0.5
    path = write_recipe(tmp_path, recipe)
    # Without GPUs, --multi_gpu starts CPU processes joined by gloo (accelerate's --cpu alone starts one process).
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    result = run_train("--config", str(path), launcher=launcher, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    # One RNG state per process in the checkpoints: two processes took part.
    assert sorted(p.name for p in (run / "checkpoints" / "checkpoint-4").glob("rng_state_*")) == [
        "rng_state_0.safetensors", "rng_state_1.safetensors"]
    results = json.loads((run / "eval_results.json").read_text())
    assert set(results) == {"synthetic_coco", "synthetic_mpii"}
    for metrics in results.values():
        assert {"AP", "AP50", "AR"} <= set(metrics)
    model = VitPoseModel.from_pretrained(run / "final")
    assert model.config.head_names == ["synthetic_coco", "synthetic_mpii"]
    assert [layout.num_keypoints for layout in model.config.layouts] == [17, 16]
    assert (run / "final" / "preprocessor_config.json").is_file()
    assert "accelerate launch scripts/train.py" in (run / "final" / "README.md").read_text()
    assert (run / "checkpoints" / "checkpoint-4").is_dir()
    assert list(run.rglob("events.out.tfevents*")), "the tensorboard tracker wrote nothing"

    # Both processes evaluated (each its share of the 3 validation images) and the main one recorded the gathered
    # metrics once per evaluation: they equal one process evaluating the final model on all images.
    history = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in history] == [2, 4]
    assert {k: v for k, v in history[-1].items() if k != "step"} == results
    processor = VitPoseImageProcessor.from_pretrained(run / "final")
    for index, section in enumerate(recipe["datasets"]):
        alone = evaluate_keypoint_dataset(
            model, processor, section["val_annotation_file"], section["val_image_root"], dataset_index=index,
            batch_size=recipe["eval_batch_size"], flip_test=True)
        assert set(alone) == set(results[section["name"]])
        for metric, value in alone.items():
            assert results[section["name"]][metric] == pytest.approx(value, abs=1e-6), (section["name"], metric)


# Initialisation -----------------------------------------------------------------------------------------------------
def test_init_from_our_checkpoint_keeps_matching_heads_and_starts_new_ones_fresh(tmp_path):
    source = VitPoseModel(VitPoseConfig(**tiny_config_kwargs(keypoint_heads=["coco", "mpii"])))
    source.save_pretrained(tmp_path / "source")
    target = VitPoseConfig(**tiny_config_kwargs(keypoint_heads=["aic", "coco"]))
    model, report = initialize_model(target, tmp_path / "source")
    ours, theirs = model.state_dict(), source.state_dict()
    for key, value in theirs.items():
        if key.startswith("vit."):
            assert torch.equal(ours[key], value), key
        if key.startswith("heads.0."):  # source coco -> target head 1
            assert torch.equal(ours["heads.1." + key[len("heads.0."):]], value), key
    fresh = VitPoseModel(target).state_dict()
    assert ours["heads.0.final_layer.weight"].shape == (14, 16, 1, 1)
    assert all(key.startswith("heads.0.") for key in report.fresh)
    assert not torch.equal(ours["heads.0.final_layer.weight"], theirs["heads.1.final_layer.weight"][:14])
    assert ours["heads.0.final_layer.weight"].shape == fresh["heads.0.final_layer.weight"].shape


def test_init_from_transformers_builtin_checkpoint(tmp_path):
    from transformers import VitPoseBackboneConfig, VitPoseForPoseEstimation
    from transformers import VitPoseConfig as BuiltinConfig

    backbone = VitPoseBackboneConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=[64, 48],
                                     out_indices=[2], mlp_ratio=4)
    builtin = VitPoseForPoseEstimation(BuiltinConfig(backbone_config=backbone, num_labels=17)).eval()
    builtin.save_pretrained(tmp_path / "builtin")
    config = VitPoseConfig(**tiny_config_kwargs(image_size=[64, 48], decoder="simple", layer_norm_eps=1e-12))
    model, report = initialize_model(config, tmp_path / "builtin")
    pixel_values = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = builtin(pixel_values).heatmaps
        got = model.eval()(pixel_values).heatmaps
    assert torch.allclose(got, expected, atol=1e-5)
    assert report.kind == "transformers vitpose" and not report.fresh


def test_init_from_original_pth_with_a_new_head(tmp_path):
    original = original_model("vitpose-base")
    path = save_original(tmp_path / "vitpose.pth", original.state_dict())
    config = VitPoseConfig.from_variant("vitpose-base", **{**tiny("vitpose-base"), "keypoint_heads": ["mpii"]})
    model, report = initialize_model(config, path)
    state = model.state_dict()
    assert torch.equal(state["vit.layers.1.attention.qkv.weight"], original.state_dict()["backbone.blocks.1.attn.qkv.weight"])
    assert report.kind == "original .pth"
    assert all(key.startswith("heads.0.") for key in report.fresh) and report.fresh


def test_init_from_a_vitmae_backbone_resamples_the_position_grid(tmp_path):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    mae_config = ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                              image_size=64, patch_size=16, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                              decoder_intermediate_size=32, layer_norm_eps=1e-6)
    mae = ViTMAEForPreTraining(mae_config)
    with torch.no_grad():
        mae.vit.embeddings.position_embeddings.normal_()  # not the sin-cos default: every slot must be checked
    mae.save_pretrained(tmp_path / "mae")
    source = {k: v.clone() for k, v in mae.state_dict().items()}
    config = VitPoseConfig(**tiny_config_kwargs(image_size=[64, 48]))
    model, report = initialize_model(config, tmp_path / "mae")
    state = model.state_dict()
    for i in range(2):
        qkv = torch.cat([source[f"vit.layers.{i}.attention.{p}_proj.weight"] for p in "qkv"])
        assert torch.equal(state[f"vit.layers.{i}.attention.qkv.weight"], qkv)
        assert torch.equal(state[f"vit.layers.{i}.norm1.weight"], source[f"vit.layers.{i}.layernorm_before.weight"])
        assert torch.equal(state[f"vit.layers.{i}.mlp.fc2.bias"], source[f"vit.layers.{i}.mlp.fc2.bias"])
    # 4x4 MAE grid (+ class slot folded into every patch) -> 4x3 grid, bicubic.
    pos = source["vit.embeddings.position_embeddings"]
    folded = (pos[:, 1:] + pos[:, :1]).reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(folded, size=(4, 3), mode="bicubic", align_corners=False)
    assert torch.allclose(state["vit.embeddings.position_embeddings"], expected.permute(0, 2, 3, 1).reshape(1, 12, 32))
    assert all(key.startswith("heads.") for key in report.fresh)


def test_init_from_a_checkpoint_of_another_size_is_an_error_naming_weights(tmp_path):
    VitPoseModel(VitPoseConfig(**tiny_config_kwargs(hidden_size=64))).save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match="vit.embeddings.projection.weight|do not fit"):
        initialize_model(VitPoseConfig(**tiny_config_kwargs()), tmp_path / "wide")


def test_every_shipped_training_recipe_parses_and_builds_its_model_config():
    from vitpose_hf.training.supervised import model_config_from

    recipes = sorted(p for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("mae_"))
    assert {"coco_vitpose_small.yaml", "coco_vitpose_base.yaml", "coco_vitpose_large.yaml", "coco_vitpose_huge.yaml",
            "coco_aic_mpii_crowdpose_vitpose_base.yaml", "synthetic_cpu.yaml"} <= {p.name for p in recipes}
    for path in recipes:
        config = load_training_config(path)
        model_config = model_config_from(config)
        assert model_config.head_names == [d.name for d in config.datasets], path.name


def test_bf16_mixed_precision_with_gradient_accumulation_runs_to_the_end(tmp_path):
    recipe = tiny_recipe(tmp_path, max_steps=2, checkpointing_steps=None)
    for dataset in recipe["datasets"]:
        dataset.pop("val_annotation_file"), dataset.pop("val_image_root"), dataset.pop("val_synthetic")
    result = run_train("--config", str(write_recipe(tmp_path, recipe)), "--mixed-precision", "bf16",
                       "--gradient-accumulation-steps", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]
    assert all(math.isfinite(entry["loss"]) and entry["loss"] > 0 for entry in log)
    saved = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert all(w.dtype == torch.float32 for w in saved.values() if w.is_floating_point())  # autocast keeps float32 weights


def test_knowledge_tokens_are_new_weights_at_the_full_learning_rate():
    config = VitPoseConfig(**tiny_config_kwargs(num_knowledge_tokens=1))
    settings = parameter_settings(VitPoseModel(config), 0.1, 0.5)
    assert settings["vit.embeddings.knowledge_tokens"].lr_scale == 1.0
    assert settings["vit.embeddings.knowledge_tokens"].weight_decay == 0.0
    assert settings["vit.embeddings.position_embeddings"].lr_scale == 0.5 ** 3
