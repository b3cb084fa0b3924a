"""The synthetic distillation experiment of docs/distillation.md: a small student trained four ways with the same seed
and budget (no distillation, output distillation, knowledge token, both), after the token stage (a), each scored by
OKS keypoint AP on a fresh synthetic set (seed 5, used by no training set). About 25 minutes of CPU time (one thread per run).

    python scripts/distillation_experiment.py
    python scripts/distillation_experiment.py --teacher outputs/synthetic_cpu/checkpoints/checkpoint-2000 \\
        --student-steps 1000 --token-steps 150

The teacher is the configs/synthetic_cpu.yaml model: its final folder, or one of its training checkpoints (turned into
a model folder with that recipe). Writes OUTPUT_DIR/results.md and results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from vitpose_hf import VitPoseImageProcessor, VitPoseModel
from vitpose_hf.training.config import load_training_config
from vitpose_hf.evaluation import evaluate_keypoint_dataset
from vitpose_hf.training.data import ensure_synthetic_data
from vitpose_hf.training.supervised import model_config_from

REPO = Path(__file__).resolve().parents[1]
TOKEN_CONFIG = REPO / "configs" / "distill_synthetic_token.yaml"
STUDENT_CONFIG = REPO / "configs" / "distill_synthetic.yaml"

# name -> the `--set` overrides of configs/distill_synthetic.yaml (which is token + output).
RUNS = {
    "none": ["distillation=null"],
    "output": ["distillation.stage=output", "distillation.token_from=null"],
    "token": ["distillation.teacher=null"],
    "both": [],
}
DESCRIPTIONS = {
    "none": "no distillation (GT loss)",
    "output": "output distillation (eq. 4 + GT)",
    "token": "knowledge token (eq. 6, L_td)",
    "both": "token + output (eq. 6, L_tod)",
}
METRICS = ("AP", "AP50", "AP75", "AR")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="outputs/synthetic_cpu/final",
                        help="a model folder, or a training checkpoint folder of --teacher-recipe")
    parser.add_argument("--teacher-recipe", default="configs/synthetic_cpu.yaml",
                        help="the recipe that trained the teacher (builds the model of a checkpoint folder)")
    parser.add_argument("--output-dir", default="outputs/distill_synthetic")
    parser.add_argument("--student-steps", type=int, default=1000)
    parser.add_argument("--token-steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training run (OMP_NUM_THREADS)")
    return parser.parse_args(argv)


def teacher_folder(source: Path, recipe: Path, output_dir: Path) -> Path:
    """A `from_pretrained` folder of the teacher; a training checkpoint is rebuilt with the recipe's model config."""
    if (source / "config.json").is_file():
        return source
    weights = source / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"--teacher {source} has neither config.json nor model.safetensors.")
    model = VitPoseModel(model_config_from(load_training_config(recipe)))
    model.load_state_dict(load_file(str(weights)), strict=True)
    folder = output_dir / "teacher"
    model.save_pretrained(folder)
    (folder / "SOURCE").write_text(f"{source}\n")
    return folder


def evaluate(model_path: Path, annotation_file: str, image_root: str, image_size: list[int] | None = None) -> dict:
    kwargs = {"image_size": image_size} if image_size is not None else {}
    model = VitPoseModel.from_pretrained(model_path, **kwargs).eval()
    processor = VitPoseImageProcessor.from_model_config(model.config)
    with torch.no_grad():
        return evaluate_keypoint_dataset(model, processor, annotation_file, image_root, dataset_index=0,
                                         flip_test=True, batch_size=64)


def train(config: Path, output_dir: Path, steps: int, seed: int, sets: list[str], threads: int) -> float:
    """One `scripts/train.py` run; returns its wall time in seconds. A run that finished before in the same folder
    with the same command is kept, so an interrupted experiment resumes where it stopped."""
    milestones = [int(steps * 0.8), int(steps * 0.95)]
    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--config", str(config), "--output-dir",
               str(output_dir), "--max-steps", str(steps), "--seed", str(seed),
               "--set", f"optimization.lr_decay_milestones={milestones}"]
    for item in sets:
        command += ["--set", item]
    record = output_dir / "experiment_run.json"
    if record.is_file() and (output_dir / "final" / "config.json").is_file():
        done = json.loads(record.read_text())
        if done["command"] == command[1:]:
            return float(done["seconds"])
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    seconds = time.perf_counter() - start
    record.write_text(json.dumps({"command": command[1:], "seconds": round(seconds, 1)}) + "\n")
    return seconds


def last_log(output_dir: Path) -> dict:
    lines = (output_dir / "train_log.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    teacher = teacher_folder(Path(args.teacher), Path(args.teacher_recipe), output_dir).resolve()
    student_recipe = load_training_config(STUDENT_CONFIG)
    test = student_recipe.datasets[0]
    ensure_synthetic_data(test)
    image_size = student_recipe.model.config_overrides["image_size"]
    results: dict = {"teacher": str(teacher), "student_steps": args.student_steps, "token_steps": args.token_steps,
                     "seed": args.seed, "rows": {}}

    native = evaluate(teacher, test.val_annotation_file, test.val_image_root)
    at_student_size = evaluate(teacher, test.val_annotation_file, test.val_image_root, image_size)
    results["rows"]["teacher"] = {"what": "teacher, its own input size", **native}
    results["rows"]["teacher@student"] = {"what": f"teacher at {image_size[0]}x{image_size[1]}", **at_student_size}

    token_dir = output_dir / "stage_a"
    seconds = train(TOKEN_CONFIG, token_dir, args.token_steps, args.seed, [f"distillation.teacher={teacher}"],
                    args.threads)
    with_token = evaluate(token_dir / "final", test.val_annotation_file, test.val_image_root)
    results["rows"]["stage_a"] = {"what": "stage (a): teacher + learned token", **with_token, "seconds": seconds,
                                  **{k: v for k, v in last_log(token_dir).items() if k.startswith("loss")}}

    common = [f"distillation.teacher={teacher}", f"distillation.token_from={token_dir / 'final'}"]
    for name in args.runs:
        run_dir = output_dir / f"student_{name}"
        seconds = train(STUDENT_CONFIG, run_dir, args.student_steps, args.seed, common + RUNS[name],  # later wins
                        args.threads)
        metrics = json.loads((run_dir / "eval_results.json").read_text())[test.name]
        results["rows"][name] = {"what": DESCRIPTIONS[name], **metrics, "seconds": seconds,
                                 **{k: v for k, v in last_log(run_dir).items() if k.startswith("loss")}}

    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| run | " + " | ".join(METRICS) + " | train s | last loss_gt | last loss_distill |",
             "|---|" + "---|" * (len(METRICS) + 3)]
    for row in results["rows"].values():
        cells = [f"{row[m]:.3f}" for m in METRICS]
        cells.append(f"{row['seconds']:.0f}" if "seconds" in row else "")
        cells.append(f"{row['loss_gt']:.5f}" if "loss_gt" in row else "")
        cells.append(f"{row['loss_distill']:.5f}" if "loss_distill" in row else "")
        lines.append(f"| {row['what']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    (output_dir / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
