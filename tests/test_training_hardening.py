"""What a run refuses or survives: recipes with a `base:`, typed and range-checked values, files checked before
step 0, checkpoints read without pickle, the output directory (lock, earlier runs, final/ renamed into place), and
progress output that log lines do not break."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from support.training import TRAIN, run_train, tiny_recipe, write_recipe

from vitpose_hf.training import supervised
from vitpose_hf.training.config import ConfigError, load_training_config
from vitpose_hf.training.run_dir import LOCK_FILE, OutputDirError
from vitpose_hf.training.supervised import train


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """In-process runs create an `Accelerator`; leave no shared accelerate state to the tests that follow."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def quick_recipe(tmp_path: Path, evaluate: bool = False, **overrides) -> dict:
    """Two optimizer steps, a checkpoint after the first; no validation split unless `evaluate`."""
    recipe = tiny_recipe(tmp_path, max_steps=2, checkpointing_steps=1, **overrides)
    if not evaluate:
        for dataset in recipe["datasets"]:
            dataset.pop("val_annotation_file"), dataset.pop("val_image_root"), dataset.pop("val_synthetic")
    return recipe


# Recipes ------------------------------------------------------------------------------------------------------------
def test_base_file_is_merged_under_the_recipe_and_cycles_are_named(tmp_path):
    recipe = tiny_recipe(tmp_path)
    (tmp_path / "base").mkdir()
    write_recipe(tmp_path / "base", recipe, "common.yaml")
    child = {"base": "base/common.yaml", "max_steps": 9, "optimization": {"learning_rate": "1e-4"}}
    config = load_training_config(write_recipe(tmp_path, child, "child.yaml"))
    assert config.max_steps == 9  # the including file wins
    assert config.optimization.learning_rate == 1e-4  # merged into the section ...
    assert config.optimization.warmup_steps == recipe["optimization"]["warmup_steps"]  # ... keeping the base's keys
    assert config.datasets[0].name == "synthetic_coco"

    write_recipe(tmp_path, {"base": "b.yaml", "seed": 1}, "a.yaml")
    write_recipe(tmp_path, {"base": "a.yaml", "seed": 2}, "b.yaml")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_training_config(tmp_path / "a.yaml")
    write_recipe(tmp_path, {"base": "missing.yaml"}, "orphan.yaml")
    with pytest.raises(ConfigError, match=r"missing\.yaml \(the base of .*orphan\.yaml\)"):
        load_training_config(tmp_path / "orphan.yaml")


def test_shipped_coco_recipes_state_only_what_differs_from_their_base():
    configs = Path(__file__).resolve().parents[1] / "configs"
    for size in ("small", "base", "large", "huge"):
        data = yaml.safe_load((configs / f"coco_vitpose_{size}.yaml").read_text())
        assert data["base"] == "base/coco_topdown.yaml"
        assert set(data) == {"base", "output_dir", "model"}
        assert load_training_config(configs / f"coco_vitpose_{size}.yaml").model.variant == f"vitpose-{size}"


# What each distillation and multi-dataset recipe must still say once its `base:` chain is read: the paper's numbers
# (Table 7 distillation on the COCO recipe, Table 9 multi-dataset at batch 1024 and lr 1e-3) and the synthetic runs'.
COCO_RECIPE = {"per_device_batch_size": 64, "num_epochs": 210, "mixed_precision": "bf16", "eval_batch_size": 64,
               "optimization.learning_rate": 5e-4, "optimization.weight_decay": 0.1, "optimization.warmup_steps": 500,
               "optimization.max_grad_norm": 1.0, "optimization.lr_decay_unit": "epochs",
               "optimization.lr_decay_milestones": [170, 200]}
SHIPPED_RECIPES = {
    "distill_coco_vitpose_large_to_base.yaml": ("coco_vitpose_base.yaml", 0.75, {
        **COCO_RECIPE, "output_dir": "outputs/distill_coco_base_token_output", "checkpointing_steps": 5000,
        "eval_steps": 10000, "model.variant": "vitpose-base", "model.init_from": "facebook/vit-mae-base",
        "distillation.stage": "student", "distillation.teacher": "checkpoints/vitpose-l.pth",
        "distillation.teacher_variant": "vitpose-large", "distillation.teacher_dtype": "bfloat16",
        "distillation.token_from": "outputs/distill_coco_large_token/final"}),
    "distill_coco_vitpose_large_to_base_token.yaml": ("base/coco_topdown.yaml", 1.0, {
        **COCO_RECIPE, "num_epochs": 10, "optimization.lr_decay_milestones": [8], "output_dir":
        "outputs/distill_coco_large_token", "logging_steps": 20, "checkpointing_steps": 1000, "eval_steps": None,
        "model.variant": "vitpose-large", "model.init_from": None, "distillation.stage": "token",
        "distillation.teacher": "checkpoints/vitpose-l.pth", "distillation.num_tokens": 1}),
    "coco_aic_mpii_crowdpose_vitpose_base.yaml": ("base/coco_topdown.yaml", 0.75, {
        **COCO_RECIPE, "per_device_batch_size": 128, "optimization.learning_rate": 1e-3,
        "output_dir": "outputs/coco_aic_mpii_crowdpose_vitpose_base", "eval_steps": 10000, "checkpointing_steps": 2000,
        "model.variant": "vitpose-base", "model.init_from": "facebook/vit-mae-base", "distillation": None}),
    "distill_synthetic.yaml": ("synthetic_cpu.yaml", 1.0, {
        "per_device_batch_size": 32, "max_steps": 1000, "num_epochs": None, "mixed_precision": "no",
        "checkpointing_steps": None, "output_dir": "outputs/distill_synthetic/student_both",
        "optimization.learning_rate": 1e-3, "optimization.weight_decay": 0.05, "optimization.warmup_steps": 50,
        "optimization.lr_decay_unit": "steps", "optimization.lr_decay_milestones": [800, 950],
        "model.config_overrides": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
                                   "image_size": [128, 96], "decoder_channels": 64, "drop_path_rate": 0.0},
        "distillation.stage": "student", "distillation.teacher": "outputs/synthetic_cpu/final",
        "distillation.token_from": "outputs/distill_synthetic/stage_a/final"}),
    "distill_synthetic_token.yaml": ("synthetic_cpu.yaml", 1.0, {
        "per_device_batch_size": 32, "max_steps": 150, "num_epochs": None, "logging_steps": 25,
        "checkpointing_steps": None, "output_dir": "outputs/distill_synthetic/stage_a",
        "optimization.learning_rate": 5e-3, "optimization.weight_decay": 0.1, "optimization.warmup_steps": 20,
        "optimization.lr_decay_milestones": [120],
        "model.config_overrides": {"hidden_size": 192, "num_hidden_layers": 6, "num_attention_heads": 3,
                                   "image_size": [128, 96], "decoder_channels": 64, "drop_path_rate": 0.1},
        "distillation.stage": "token", "distillation.teacher": "outputs/synthetic_cpu/final"}),
}
SHIPPED_DATASETS = {
    "distill_coco_vitpose_large_to_base.yaml": [("coco", "coco", "coco_val2017_detections_ap_h_56_person.json")],
    "distill_coco_vitpose_large_to_base_token.yaml": [("coco", "coco", "coco_val2017_detections_ap_h_56_person.json")],
    "coco_aic_mpii_crowdpose_vitpose_base.yaml": [
        ("coco", "coco", "coco_val2017_detections_ap_h_56_person.json"), ("aic", "aic", None), ("mpii", "mpii", None),
        ("crowdpose", "coco", "")],
    "distill_synthetic.yaml": [("synthetic", "coco", "")],
    "distill_synthetic_token.yaml": [("synthetic", "coco", None)],
}


@pytest.mark.parametrize("name", sorted(SHIPPED_RECIPES))
def test_shipped_distillation_and_multi_dataset_recipes_keep_their_values_through_the_base(name):
    from vitpose_hf.training.optim import default_layer_decay_rate

    path = Path(__file__).resolve().parents[1] / "configs" / name
    base, layer_decay, expected = SHIPPED_RECIPES[name]
    assert yaml.safe_load(path.read_text())["base"] == base
    config = load_training_config(path)
    for dotted, value in expected.items():
        found = config
        for key in dotted.split("."):
            found = found[key] if isinstance(found, dict) else getattr(found, key)  # distillation is a mapping
        assert found == value, (name, dotted)
    opt = config.optimization
    assert (opt.layer_decay_rate if opt.layer_decay_rate is not None
            else default_layer_decay_rate(config.model.variant)) == layer_decay
    # (name, format, validation): the detections file of the paper, ground-truth boxes (""), or no validation split.
    found = [(d.name, d.format, None if not d.val_annotation_file else
              (Path(d.val_detections).name.lower() if d.val_detections else "")) for d in config.datasets]
    assert found == SHIPPED_DATASETS[name]


def test_numbers_are_typed_by_the_schema_from_files_and_the_command_line(tmp_path, monkeypatch):
    recipe = tiny_recipe(tmp_path)
    recipe["optimization"]["weight_decay"] = "1e-2"  # what YAML 1.1 makes of `1e-2`
    path = write_recipe(tmp_path, recipe)
    config = load_training_config(path, dotted=["optimization.learning_rate=1e-05", "max_steps=1e1",
                                                "model.config_overrides.drop_path_rate=1e-1"])
    assert config.optimization.weight_decay == 0.01 and config.optimization.learning_rate == 1e-5
    assert config.max_steps == 10 and isinstance(config.max_steps, int)
    assert config.model.config_overrides["drop_path_rate"] == 0.1

    seen = {}
    monkeypatch.setattr(supervised, "train", lambda config, **kwargs: seen.setdefault("config", config))
    script = _load_script()
    assert script.main(["--config", str(path), "--learning-rate", "1e-5", "--set", "optimization.warmup_ratio=1e-3"]) == 0
    assert seen["config"].optimization.learning_rate == 1e-5
    assert seen["config"].optimization.warmup_ratio == 1e-3

    with pytest.raises(ConfigError, match=r"optimization\.learning_rate must be float, got 'fast'"):
        load_training_config(path, dotted=["optimization.learning_rate=fast"])


@pytest.mark.parametrize("override, message", [
    ("augmentation.flip_prob=1.5", r"augmentation\.flip_prob is a probability and must lie in \[0, 1\]"),
    ("augmentation.flip_probability=0.5", r"Unknown config key augmentation\.flip_probability \(did you mean flip_prob"),
    ("optimization.warmup_steps=-1", r"optimization\.warmup_steps must be >= 0"),
    ("optimization.weight_decay=-0.1", r"optimization\.weight_decay must be >= 0"),
    ("checkpointing_steps=0", r"checkpointing_steps must be >= 1"),
    ("max_steps=-3", r"max_steps must be >= 1"),
    ("max_steps=0", r"max_steps must be >= 1, got 0: a run of 0 steps would write an untrained final/"),
    ("checkpoints_total_limit=-1", r"checkpoints_total_limit must be >= 1, or null to keep every checkpoint"),
    ("optimization.lerning_rate=1e-3", r"Unknown config key optimization\.lerning_rate \(did you mean learning_rate"),
    ("model.config_overrides.drop_pth_rate=0.1", r"model\.config_overrides\.drop_pth_rate: not a VitPoseConfig field"),
    ("datasets.3.name=x", r"'3' is not an index of a list of 1"),
])
def test_bad_values_are_refused_naming_the_key(tmp_path, override, message):
    path = write_recipe(tmp_path, tiny_recipe(tmp_path))
    with pytest.raises(ConfigError, match=message):
        load_training_config(path, dotted=[override])


# Checked before step 0 ------------------------------------------------------------------------------------------------
def test_unreadable_validation_files_fail_before_the_first_step(tmp_path):
    recipe = tiny_recipe(tmp_path)
    bad = tmp_path / "broken.json"
    bad.write_text("{ not json")
    recipe["datasets"][0]["val_detections"] = str(bad)
    result = run_train("--config", str(write_recipe(tmp_path, recipe)))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "datasets[0].val_detections" in result.stderr and str(bad) in result.stderr
    assert not (tmp_path / "run" / "train_log.jsonl").exists() and not (tmp_path / "run" / "checkpoints").exists()

    recipe = tiny_recipe(tmp_path)
    recipe["datasets"][0].update(val_annotation_file=str(bad), val_synthetic=None)
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.val_annotation_file .* cannot be read"):
        train(load_training_config(overrides=recipe))
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


def test_pckh_without_head_boxes_is_a_config_error(tmp_path):
    recipe = tiny_recipe(tmp_path, datasets=("mpii",))
    recipe["datasets"][0]["metric"] = "pckh"
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.metric is pckh but datasets\[0\]\.val_head_boxes"):
        load_training_config(overrides=recipe)


# Checkpoints without pickle --------------------------------------------------------------------------------------
class _CreatesAFile:
    """Unpickling this creates the file: what a malicious checkpoint would do."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_resume_never_unpickles_what_a_checkpoint_folder_holds(tmp_path):
    recipe = quick_recipe(tmp_path)
    train(load_training_config(overrides=recipe))
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-1"
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "model.safetensors", "optimizer.pt", "rng_state_0.safetensors", "state.json"]
    marker = tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "scheduler.bin"):
        (checkpoint / name).write_bytes(pickle.dumps(_CreatesAFile(marker)))
    train(load_training_config(overrides=recipe), resume_from_checkpoint=str(checkpoint))
    assert not marker.exists()

    # The optimizer state is read with weights_only=True: a pickle that runs code is refused.
    torch.save({"state": {}, "param_groups": _CreatesAFile(marker)}, checkpoint / "optimizer.pt")
    with pytest.raises(pickle.UnpicklingError):
        train(load_training_config(overrides=recipe), resume_from_checkpoint=str(checkpoint))
    assert not marker.exists()

    # A checkpoint of accelerate's pickle format (no state.json) is refused, not read.
    (checkpoint / "state.json").unlink()
    with pytest.raises(ValueError, match=r"has no state\.json"):
        train(load_training_config(overrides=recipe), resume_from_checkpoint=str(checkpoint))


# The output directory -------------------------------------------------------------------------------------------------
def test_a_second_run_into_a_finished_run_refuses_unless_resuming_or_overwriting(tmp_path):
    path = write_recipe(tmp_path, quick_recipe(tmp_path))
    assert run_train("--config", str(path)).returncode == 0
    first = (tmp_path / "run" / "final" / "model.safetensors").read_bytes()
    result = run_train("--config", str(path))
    assert result.returncode == 2
    assert "already holds a run" in result.stderr and "--overwrite-output-dir" in result.stderr
    result = run_train("--config", str(path), "--overwrite-output-dir", "--seed", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "final" / "model.safetensors").read_bytes() != first
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()] == [1, 2]
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released at the end


def test_a_live_lock_refuses_and_a_stale_one_is_taken_over(tmp_path):
    recipe = quick_recipe(tmp_path)
    output = tmp_path / "run"
    output.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (output / LOCK_FILE).write_text(f"{holder.pid}\n")
        with pytest.raises(OutputDirError, match=rf"Another run \(pid {holder.pid}\) is writing to"):
            train(load_training_config(overrides=recipe))
    finally:
        holder.kill()
        holder.wait()
    train(load_training_config(overrides=recipe))  # the holder is dead: its lock is stale
    assert (output / "final" / "model.safetensors").is_file() and not (output / LOCK_FILE).exists()


def test_final_is_replaced_only_once_the_new_one_is_complete(tmp_path, monkeypatch):
    recipe = quick_recipe(tmp_path)
    train(load_training_config(overrides=recipe))
    final = tmp_path / "run" / "final"
    before = {p.name: p.read_bytes() for p in final.iterdir()}

    def broken_save(self, model, folder, results, command):
        model.save_pretrained(folder)
        raise OSError("disk full")

    monkeypatch.setattr(supervised.SupervisedTask, "save_final", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train(load_training_config(overrides=recipe), overwrite_output_dir=True)
    assert {p.name: p.read_bytes() for p in final.iterdir()} == before  # the previous final/ is intact


# Progress -------------------------------------------------------------------------------------------------------------
def test_evaluation_shows_progress_and_log_lines_do_not_break_the_bar(tmp_path):
    recipe = quick_recipe(tmp_path, evaluate=True, eval_steps=1)
    result = run_train("--config", str(write_recipe(tmp_path, recipe)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Evaluating" in result.stderr  # the evaluation's own progress bar
    segments = re.split(r"[\r\n]", result.stderr)
    logged = [s for s in segments if " INFO vitpose_hf" in s]
    assert any("step 1 evaluation" in s for s in logged)
    # Each log line starts a line of its own (tqdm.write), never glued to the end of a progress bar.
    assert all(re.match(r"\s*\d{4}-\d\d-\d\d ", s) for s in logged), [s for s in logged if not s.startswith("20")][:3]
    card = (tmp_path / "run" / "final" / "README.md").read_text()
    assert "whole image is one person" in card and "| synthetic_coco | AP |" in card


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
