"""scripts/train.py on a recipe whose dataset is read with the `datasets` library (parquet shards with embedded
pictures): it trains to the end, evaluates from the validation split's rows, and checks the columns before step 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.parquet import export_parquet
from support.training import run_train, tiny_recipe, write_recipe

from vitpose_hf import VitPoseImageProcessor, VitPoseModel
from vitpose_hf.data.hf_datasets import load_keypoint_rows
from vitpose_hf.data.synthetic import generate_synthetic_dataset
from vitpose_hf.defaults import embedded_model_path
from vitpose_hf.evaluation import evaluate_keypoint_dataset
from vitpose_hf.training.config import ConfigError, load_training_config

COLUMNS = {"keypoints": "joints"}  # the exported shards name the keypoints column "joints"


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """12 training and 3 validation synthetic images as parquet shards train-*.parquet and val-*.parquet."""
    root = tmp_path_factory.mktemp("hf_data")
    folder = root / "shards"
    for split, count, seed in (("train", 12, 0), ("val", 3, 100)):
        annotations = generate_synthetic_dataset(root / split, count, image_size=(128, 128), seed=seed, max_people=2)
        export_parquet(annotations, root / split / "images", folder, prefix=split)
    return folder


def hf_recipe(tmp_path: Path, shards: Path, columns: dict[str, str], streaming: bool = False) -> dict:
    """Four steps of fine-tuning the embedded model (it knows these figures, so the metrics are not all zero) on its
    own head ("synthetic"), the dataset given as parquet shards."""
    recipe = tiny_recipe(tmp_path, max_steps=4, checkpointing_steps=2, samples_per_epoch=8)
    recipe["model"] = {"variant": "vitpose-small", "init_from": embedded_model_path(), "config_overrides": {
        "hidden_size": 192, "num_hidden_layers": 6, "num_attention_heads": 3, "image_size": [192, 144],
        "decoder_channels": 64}}
    recipe["optimization"]["learning_rate"] = 1e-5
    recipe["datasets"] = [{"name": "synthetic", "layout": "coco", "hf_dataset": {
        "path": "parquet", "columns": columns, "streaming": streaming, "shuffle_buffer": 8,
        "data_files": {"train": str(shards / "train-*.parquet"), "validation": str(shards / "val-*.parquet")}}}]
    return recipe


@pytest.mark.parametrize("streaming", [False, True], ids=["table", "streamed"])
def test_train_from_parquet_runs_to_the_end_and_evaluates_from_the_rows(tmp_path, shards, streaming):
    recipe = hf_recipe(tmp_path, shards, COLUMNS, streaming)
    done = run_train("--config", str(write_recipe(tmp_path, recipe)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = Path(recipe["output_dir"])
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in log)
    assert (run / "final" / "model.safetensors").is_file()
    assert (run / "checkpoints" / "checkpoint-2").is_dir()
    reported = json.loads((run / "eval_results.json").read_text())["synthetic"]

    # The finished model, evaluated afresh on the validation shards (read by glob, not through the recipe).
    model = VitPoseModel.from_pretrained(run / "final").eval()
    processor = VitPoseImageProcessor.from_pretrained(run / "final")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the training process (OMP_NUM_THREADS=1): the same floating-point sums
    try:
        with torch.no_grad():
            expected = evaluate_keypoint_dataset(model, processor, rows=load_keypoint_rows(str(shards / "val-*.parquet")),
                                                 columns=COLUMNS, flip_test=True, batch_size=recipe["eval_batch_size"])
    finally:
        torch.set_num_threads(threads)
    assert set(reported) == set(expected) and expected["AP"] > 0.1
    for name, value in expected.items():
        assert reported[name] == pytest.approx(value, abs=1e-6), name
    if streaming:
        return

    # Exact resume: from the step-2 checkpoint, steps 3 and 4 again give the same final weights.
    first = load_file(run / "final" / "model.safetensors")
    done = run_train("--config", str(write_recipe(tmp_path, recipe)), "--resume-from-checkpoint",
                     str(run / "checkpoints" / "checkpoint-2"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again = load_file(run / "final" / "model.safetensors")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[key], again[key]) for key in first)


def test_a_missing_column_is_an_error_naming_it_before_step_0(tmp_path, shards):
    recipe = hf_recipe(tmp_path, shards, {})  # the default "keypoints" column is not in the shards
    done = run_train("--config", str(write_recipe(tmp_path, recipe)))
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "datasets[0].hf_dataset" in done.stderr
    assert "no column keypoints (keypoints)" in done.stderr
    run = Path(recipe["output_dir"])
    assert not (run / "train_log.jsonl").exists() and not (run / "checkpoints").exists()


def test_recipe_keys_of_hf_dataset_are_checked_by_name(tmp_path, shards):
    def config_error(change) -> str:
        recipe = hf_recipe(tmp_path, shards, COLUMNS)
        change(recipe)
        with pytest.raises(ConfigError) as error:
            load_training_config(write_recipe(tmp_path, recipe))
        return str(error.value)

    assert "datasets[0].hf_dataset.columns.joints" in config_error(
        lambda r: r["datasets"][0]["hf_dataset"].update(columns={"joints": "keypoints"}))
    assert "hf_dataset replaces ['annotation_file']" in config_error(
        lambda r: r["datasets"][0].update(annotation_file="train.json"))
    assert "samples_per_epoch is required" in config_error(
        lambda r: (r["datasets"][0]["hf_dataset"].update(streaming=True), r.update(samples_per_epoch=None)))
    assert "stream every dataset or none" in config_error(
        lambda r: (r["datasets"][0]["hf_dataset"].update(streaming=True),
                   r["datasets"].append({**r["datasets"][0], "name": "other",
                                         "hf_dataset": {**r["datasets"][0]["hf_dataset"], "streaming": False}})))
    assert "Unknown config key datasets[0].hf_dataset.stream" in config_error(
        lambda r: r["datasets"][0]["hf_dataset"].update(stream=True))
