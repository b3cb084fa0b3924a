"""Running the training script on tiny synthetic recipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from support.models import tiny_config_kwargs

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "scripts" / "train.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def tiny_recipe(tmp_path: Path, datasets=("coco",), **overrides) -> dict:
    """A whole training config for a 2-block model on a few synthetic images (generated on first use)."""
    sections = []
    for i, layout in enumerate(datasets):
        root = tmp_path / f"data_{layout}"
        sections.append({
            "name": f"synthetic_{layout}", "layout": layout,
            "annotation_file": str(root / "train" / "annotations.json"), "image_root": str(root / "train" / "images"),
            "synthetic": {"num_images": 12, "seed": i, "image_size": [128, 128], "max_people": 2},
            "val_annotation_file": str(root / "val" / "annotations.json"), "val_image_root": str(root / "val" / "images"),
            "val_synthetic": {"num_images": 3, "seed": 100 + i, "image_size": [128, 128], "max_people": 2},
        })
    recipe = {
        "output_dir": str(tmp_path / "run"), "seed": 0, "per_device_batch_size": 4, "max_steps": 6,
        "num_workers": 0, "logging_steps": 1, "checkpointing_steps": 3, "checkpoints_total_limit": 3,
        "eval_batch_size": 8,
        "model": {"variant": "vitpose-small", "config_overrides": {
            **tiny_config_kwargs(), "image_size": [64, 48], "drop_path_rate": 0.2}},
        "datasets": sections,
        "optimization": {"warmup_steps": 2, "lr_decay_milestones": [4], "lr_decay_unit": "steps"},
    }
    recipe.update(overrides)
    return recipe


def write_recipe(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_train(*args: str, launcher: list[str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable]) + [str(TRAIN), *args]
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
