"""The training loop behind `scripts/train.py`, shaped like transformers' `*_no_trainer.py` examples.

Resuming is exact: the model, optimizer, scheduler, RNG states and the step count are saved with accelerate's
`save_state`, and the data order is a function of (seed, epoch) (`MixingSampler`, `TopDownAugmentation`), so the
step count alone says where in the data the run stands. A resumed run therefore finishes with the same weights as an
uninterrupted one. Each process shards the draws itself (the sampler is not re-wrapped by accelerate), which keeps
that position exact with any number of processes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..codec import HeadCodec
from ..configuration_vitpose import VitPoseConfig
from ..data.coco import load_keypoint_dataset
from ..data.mixing import MixedDataset, MixingSampler, collate_keypoints
from ..data.synthetic import generate_synthetic_dataset
from ..data.transforms import TopDownAugmentation
from ..image_processing_vitpose import VitPoseImageProcessor
from ..keypoints import KeypointLayout, get_layout
from .config import DatasetSection, TrainingConfig, save_training_config
from .initialization import initialize_model
from .optim import apply_freeze, build_optimizer_and_scheduler, default_layer_decay_rate, epochs_to_steps

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops before the bad step touches any weight."""


class TrainingProgress:
    """Step count and data position, saved in every checkpoint (`accelerator.register_for_checkpointing`)."""

    def __init__(self) -> None:
        self.completed_steps = 0
        self.sampler_state: dict[str, int] = {}
        self.data_signature: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"completed_steps": self.completed_steps, "sampler_state": self.sampler_state,
                "data_signature": self.data_signature}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.completed_steps = int(state["completed_steps"])
        self.sampler_state = dict(state.get("sampler_state", {}))
        self.data_signature = dict(state.get("data_signature", {}))


# Datasets ---------------------------------------------------------------------------------------------------------
def dataset_layout(section: DatasetSection) -> KeypointLayout:
    """The dataset's keypoint layout, named after the dataset: that name is its head's name."""
    layout = get_layout(section.layout).to_dict()
    layout["name"] = section.name
    return KeypointLayout.from_dict(layout)


def ensure_synthetic_data(section: DatasetSection) -> None:
    """Generate the synthetic training/validation sets a config asks for, where they are not on disk yet."""
    for annotation_file, image_root, spec in (
        (section.annotation_file, section.image_root, section.synthetic),
        (section.val_annotation_file, section.val_image_root, section.val_synthetic),
    ):
        if spec is None or annotation_file is None or Path(annotation_file).is_file():
            continue
        folder = Path(annotation_file).parent
        if Path(image_root).resolve() != (folder / "images").resolve() or Path(annotation_file).name != "annotations.json":
            raise ValueError(
                f"Dataset {section.name!r}: a synthetic dataset is written as DIR/annotations.json with DIR/images; "
                f"got annotation_file {annotation_file} and image_root {image_root}."
            )
        logger.info("Generating synthetic dataset %s (%d images, seed %d)", folder, spec.num_images, spec.seed)
        generate_synthetic_dataset(folder, spec.num_images, section.layout, spec.seed, tuple(spec.image_size),
                                   spec.max_people)


def model_config_from(config: TrainingConfig) -> VitPoseConfig:
    heads = [dataset_layout(d).to_dict() for d in config.datasets]
    return VitPoseConfig.from_variant(config.model.variant, **{**config.model.config_overrides, "keypoint_heads": heads})


def head_codec_of(model_config: VitPoseConfig, name: str) -> HeadCodec | None:
    """The encoding of the head named after a dataset; None (UDP) where the model has no such head (MAE crops)."""
    return model_config.head_codec(name) if name in model_config.head_names else None


def build_train_data(config: TrainingConfig, model_config: VitPoseConfig, rank: int, world_size: int):
    """The mixed training set, its sampler (sharded by process) and the per-dataset augmentations."""
    height, width = model_config.image_size
    heatmap_h, heatmap_w = model_config.heatmap_size
    parts, transforms = [], []
    for index, section in enumerate(config.datasets):
        transform = TopDownAugmentation(
            dataset_layout(section), input_size=(height, width), heatmap_size=(heatmap_h, heatmap_w),
            codec=head_codec_of(model_config, section.name), seed=config.seed, **config.augmentation,
        )
        dataset = load_keypoint_dataset(
            section.annotation_file, section.image_root, dataset_layout(section), section.format,
            dataset_name=section.name, dataset_index=index, transform=transform,
        )
        if len(dataset) == 0:
            raise ValueError(f"Dataset {section.name!r} ({section.annotation_file}) has no usable person annotation.")
        parts.append(dataset)
        transforms.append(transform)
    mixed = MixedDataset(parts)
    probabilities = None if config.datasets[0].probability is None else [d.probability for d in config.datasets]
    sampler = MixingSampler(mixed.sizes, probabilities, num_samples=config.samples_per_epoch, seed=config.seed,
                            rank=rank, world_size=world_size)
    return mixed, sampler, transforms


# Checkpoints ------------------------------------------------------------------------------------------------------
def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a checkpoint is renamed into place only once fully written)."""
    folder = Path(output_dir) / "checkpoints"
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if re.fullmatch(rf"{CHECKPOINT_PREFIX}\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def resolve_checkpoint(resume_from: str, output_dir: str | Path) -> Path:
    if resume_from == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise FileNotFoundError(f"--resume-from-checkpoint latest: no checkpoint in {Path(output_dir) / 'checkpoints'}.")
        return checkpoints[-1]
    path = Path(resume_from)
    if not path.is_dir():
        raise FileNotFoundError(f"Checkpoint folder not found: {resume_from}")
    return path


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None) -> Path:
    """`save_state` into a temporary folder renamed at the end: a killed save never looks like a checkpoint."""
    folder = output_dir / "checkpoints"
    final = folder / f"{CHECKPOINT_PREFIX}{step}"
    staging = folder / f".tmp-{CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


# Run set-up shared by the training and MAE pre-training loops ------------------------------------------------------
def start_run(config: Any, config_file: str) -> Accelerator:
    """The accelerator of a run, logging, seeding, the output folder, synthetic data and the config as run."""
    output_dir = Path(config.output_dir)
    # Without an accelerator, processes started by `accelerate launch --multi_gpu` / torchrun join over gloo.
    accelerator = Accelerator(
        cpu=not torch.accelerator.is_available(), mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps, log_with=config.report_to,
        project_dir=str(output_dir),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger("vitpose_hf").setLevel(logging.WARNING)
    set_seed(config.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        for section in config.datasets:
            ensure_synthetic_data(section)
        save_training_config(config, output_dir / config_file)
    accelerator.wait_for_everyone()
    return accelerator


def build_loader(
    config: Any, dataset, sampler: MixingSampler, accelerator: Accelerator
) -> tuple[DataLoader, int, int, int]:
    """The DataLoader (with its own generator, so that creating iterators never touches the global RNG) and the
    run's length: (loader, steps per epoch, max steps, epochs)."""
    loader = DataLoader(
        dataset, batch_size=config.per_device_batch_size, sampler=sampler, collate_fn=collate_keypoints,
        num_workers=config.num_workers, drop_last=True, pin_memory=accelerator.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed), persistent_workers=False,
    )
    steps_per_epoch = len(sampler) // config.per_device_batch_size // config.gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise ValueError(
            f"An epoch of {len(sampler)} draws per process cannot fill one optimizer step of "
            f"{config.per_device_batch_size} x {config.gradient_accumulation_steps} samples; lower the batch size "
            "or raise samples_per_epoch."
        )
    max_steps = config.max_steps if config.max_steps is not None else config.num_epochs * steps_per_epoch
    return loader, steps_per_epoch, max_steps, math.ceil(max_steps / steps_per_epoch)


def restore_run(
    accelerator: Accelerator, config: Any, scheduler, resume_from_checkpoint: str | None
) -> tuple[TrainingProgress, Path | None]:
    """Register what checkpoints hold besides model and optimizer, and load the checkpoint to resume from.

    The data position follows from the step count only while batch size, processes, accumulation and seed are the
    same: a checkpoint written with others is refused."""
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(scheduler, progress)
    signature = {"per_device_batch_size": config.per_device_batch_size, "num_processes": accelerator.num_processes,
                 "gradient_accumulation_steps": config.gradient_accumulation_steps, "seed": config.seed}
    last_checkpoint = None
    if resume_from_checkpoint:
        last_checkpoint = resolve_checkpoint(resume_from_checkpoint, config.output_dir)
        accelerator.load_state(str(last_checkpoint))
        if progress.data_signature and progress.data_signature != signature:
            raise ValueError(
                f"Checkpoint {last_checkpoint} was written with {progress.data_signature}, this run has {signature}: "
                "the data position cannot be restored."
            )
        logger.info("Resumed from %s at step %d", last_checkpoint, progress.completed_steps)
    progress.data_signature = signature
    return progress, last_checkpoint


def periodic_work(
    accelerator: Accelerator, config: Any, step: int, max_steps: int, evaluate: Callable[[], Any]
) -> Path | None:
    """Checkpoint and evaluate where their cadence falls (the last step is the end of the run's business).
    Returns the checkpoint written, if any."""
    checkpoint = None
    if config.checkpointing_steps and step % config.checkpointing_steps == 0 and step < max_steps:
        checkpoint = save_checkpoint(accelerator, Path(config.output_dir), step, config.checkpoints_total_limit)
    if config.eval_steps and step % config.eval_steps == 0 and step < max_steps:
        evaluate()
    return checkpoint


def record_logs(accelerator: Accelerator, config: Any, step: int, logs: dict[str, float]) -> None:
    """Training metrics of a logging window: the log, OUTPUT/train_log.jsonl and the trackers."""
    if accelerator.is_main_process:
        logger.info("step %d: %s", step, json.dumps({k: round(v, 6) for k, v in logs.items()}))
        with open(Path(config.output_dir) / "train_log.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **logs}) + "\n")
    if config.report_to:
        accelerator.log(logs, step=step)


# Evaluation -------------------------------------------------------------------------------------------------------
def evaluate_datasets(model, processor, config: TrainingConfig) -> dict[str, dict[str, float]]:
    """Keypoint AP (or PCKh) of every dataset with a validation split, with flip test, on this process."""
    from ..evaluation.dataset import evaluate_keypoint_dataset

    results = {}
    for index, section in enumerate(config.datasets):
        if not section.val_annotation_file:
            continue
        results[section.name] = evaluate_keypoint_dataset(
            model, processor, section.val_annotation_file, section.val_image_root, dataset_layout(section),
            dataset_index=index, detections=section.val_detections, flip_test=config.eval_flip_test,
            batch_size=config.eval_batch_size, metric=section.metric,
        )
    return results


# The run ----------------------------------------------------------------------------------------------------------
def set_train_mode(model: torch.nn.Module) -> None:
    """Training mode, except for modules whose parameters are all frozen: a frozen BatchNorm keeps its statistics
    and a frozen block drops no path, so frozen parts behave exactly as the model they came from."""
    model.train()
    for module in model.modules():
        parameters = list(module.parameters(recurse=False))
        if parameters and not any(p.requires_grad for p in parameters):
            module.eval()


def _move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train(config: TrainingConfig, resume_from_checkpoint: str | None = None, command: str | None = None) -> dict:
    """Run the training described by `config`; returns the final evaluation results."""
    config.check_paths()
    output_dir = Path(config.output_dir)
    accelerator = start_run(config, "training_config.yaml")

    distiller = None
    if config.distillation:
        from .distillation import build_distiller

        distiller = build_distiller(config.distillation)
    model_config = model_config_from(config)
    if distiller is not None:
        distiller.configure(model_config)
    model, report = initialize_model(model_config, config.model.init_from, config.model.init_backbone_only)
    logger.info("%s", report)
    if distiller is not None:
        distiller.prepare(model, accelerator.device)
    frozen = apply_freeze(model, config.optimization.freeze)
    if frozen:
        logger.info("Frozen (%s): %d parameter tensors", config.optimization.freeze, len(frozen))

    dataset, sampler, transforms = build_train_data(config, model_config, accelerator.process_index,
                                                    accelerator.num_processes)
    loader, steps_per_epoch, max_steps, num_epochs = build_loader(config, dataset, sampler, accelerator)

    opt = config.optimization
    milestones = opt.lr_decay_milestones if opt.lr_decay_unit == "steps" else epochs_to_steps(
        opt.lr_decay_milestones, steps_per_epoch)
    layer_decay = opt.layer_decay_rate if opt.layer_decay_rate is not None else default_layer_decay_rate(config.model.variant)
    optimizer, scheduler = build_optimizer_and_scheduler(
        model, opt.learning_rate, opt.weight_decay, tuple(opt.betas), layer_decay, opt.warmup_steps,
        opt.warmup_ratio, milestones, opt.lr_decay_gamma,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    # The scheduler counts optimizer steps itself (accelerate would step it once per process).
    progress, last_checkpoint = restore_run(accelerator, config, scheduler, resume_from_checkpoint)

    if config.report_to:
        accelerator.init_trackers(output_dir.name, config={"learning_rate": opt.learning_rate,
                                                           "batch_size": config.per_device_batch_size,
                                                           "max_steps": max_steps})
    total_batch = config.per_device_batch_size * accelerator.num_processes * config.gradient_accumulation_steps
    logger.info("***** Training *****  datasets %s (sizes %s), %d steps (%d per epoch), global batch %d, %d processes",
                [d.name for d in config.datasets], dataset.sizes, max_steps, steps_per_epoch, total_batch,
                accelerator.num_processes)

    bar = tqdm(total=max_steps, initial=progress.completed_steps, disable=not accelerator.is_local_main_process,
               desc="train", dynamic_ncols=True)
    window: dict[str, float] = {}
    window_count = 0
    window_start = time.perf_counter()
    set_train_mode(model)
    start_epoch = progress.completed_steps // steps_per_epoch
    for epoch in range(start_epoch, num_epochs):
        if progress.completed_steps >= max_steps:
            break
        sampler.set_epoch(epoch)
        for transform in transforms:
            transform.set_epoch(epoch)
        skip_steps = progress.completed_steps - epoch * steps_per_epoch
        sampler.start_index = skip_steps * config.gradient_accumulation_steps * config.per_device_batch_size
        batches = iter(loader)
        for _ in range((steps_per_epoch - skip_steps) * config.gradient_accumulation_steps):
            batch = _move(next(batches), accelerator.device)
            with accelerator.accumulate(model):
                outputs = model(pixel_values=batch["pixel_values"], dataset_index=batch["dataset_index"],
                                labels=batch["labels"], target_weight=batch["target_weight"])
                terms = {"loss_gt": outputs.loss}
                if distiller is not None:
                    terms.update(distiller.loss_terms(batch, outputs))
                loss = sum(terms.values())
                finite = accelerator.gather(torch.isfinite(loss.detach()).float().reshape(1))  # gloo has no bool
                if not bool(finite.all()):
                    where = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
                    raise NonFiniteLossError(
                        f"Non-finite loss ({loss.item()}) at step {progress.completed_steps + 1} (epoch {epoch}); "
                        f"stopping before the update, {where}."
                    )
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients and opt.max_grad_norm:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), opt.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for key, value in terms.items():
                window[key] = window.get(key, 0.0) + float(value.detach())
            window_count += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            progress.completed_steps += 1
            step = progress.completed_steps
            progress.sampler_state = {"epoch": epoch, "position": (step - epoch * steps_per_epoch) * config.gradient_accumulation_steps * config.per_device_batch_size}
            bar.update(1)

            if step % config.logging_steps == 0 or step == max_steps:
                elapsed = time.perf_counter() - window_start
                logs = {key: value / window_count for key, value in window.items()}
                logs["loss"] = sum(logs.values())
                logs["lr"] = max(group["lr"] for group in optimizer.param_groups)  # the heads' (unscaled) lr
                logs["samples_per_second"] = window_count * config.per_device_batch_size * accelerator.num_processes / max(elapsed, 1e-9)
                if grad_norm is not None:
                    logs["grad_norm"] = float(grad_norm)
                logs["epoch"] = epoch
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "loss_gt", "loss_distill", "lr")})
                record_logs(accelerator, config, step, logs)
                window, window_count, window_start = {}, 0, time.perf_counter()

            last_checkpoint = periodic_work(
                accelerator, config, step, max_steps,
                lambda: _evaluate_and_record(accelerator, model, model_config, config, output_dir, step),
            ) or last_checkpoint
            if step >= max_steps:
                break
    bar.close()

    save_checkpoint(accelerator, output_dir, progress.completed_steps, config.checkpoints_total_limit)
    results = _evaluate_and_record(accelerator, model, model_config, config, output_dir, progress.completed_steps)
    if accelerator.is_main_process:
        save_final_model(accelerator.unwrap_model(model), output_dir / "final", config, results, command)
    finish_run(accelerator, config, results, f"Training run {output_dir.name}, step {progress.completed_steps}")
    return results


def finish_run(accelerator: Accelerator, config: Any, results: dict, message: str) -> None:
    """After OUTPUT/final is written: OUTPUT/eval_results.json, the optional Hub push, closing the trackers."""
    output_dir = Path(config.output_dir)
    if accelerator.is_main_process:
        if results:
            (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        if config.push_to_hub:
            from huggingface_hub import upload_folder

            upload_folder(repo_id=config.push_to_hub, folder_path=output_dir / "final", commit_message=message)
    accelerator.wait_for_everyone()
    if config.report_to:
        accelerator.end_training()


def _evaluate_and_record(accelerator, model, model_config, config, output_dir: Path, step: int) -> dict:
    """Evaluate on the main process (the others wait); log the metrics and append them to eval_history.jsonl."""
    results: dict = {}
    if any(d.val_annotation_file for d in config.datasets) and accelerator.is_main_process:
        network = accelerator.unwrap_model(model)
        network.eval()
        processor = VitPoseImageProcessor.from_model_config(model_config)
        with torch.no_grad(), accelerator.autocast():
            results = evaluate_datasets(network, processor, config)
        set_train_mode(network)
        logger.info("step %d evaluation: %s", step, json.dumps(results))
        with open(output_dir / "eval_history.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **results}) + "\n")
        if config.report_to:
            accelerator.log({f"eval/{name}/{key}": value for name, metrics in results.items()
                             for key, value in metrics.items() if isinstance(value, (int, float))}, step=step)
    accelerator.wait_for_everyone()
    return results


def save_final_model(model, folder: Path, config: TrainingConfig, results: dict, command: str | None) -> None:
    """`save_pretrained` of the model and its image processor, the eval results, the recipe and a model card."""
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    VitPoseImageProcessor.from_model_config(model.config).save_pretrained(folder)
    save_training_config(config, folder / "training_config.yaml")
    if results:
        (folder / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    (folder / "README.md").write_text(render_trained_model_card(model.config, config, results, command))


def render_trained_model_card(model_config: VitPoseConfig, config: TrainingConfig, results: dict, command: str) -> str:
    """A model card for a model trained here: what it was trained on, its metrics and the command to reproduce it."""
    heads = ", ".join(f"{layout.name} ({layout.num_keypoints} keypoints)" for layout in model_config.layouts)
    rows = "\n".join(
        f"| {name} | " + " | ".join(f"{metrics.get(k, float('nan')):.4f}" for k in ("AP", "AP50", "AP75", "AR")) + " |"
        for name, metrics in results.items() if "AP" in metrics
    )
    table = f"| dataset | AP | AP50 | AP75 | AR |\n|---|---|---|---|---|\n{rows}\n" if rows else "Not evaluated.\n"
    height, width = model_config.image_size
    return f"""---
library_name: transformers
pipeline_tag: keypoint-detection
license: apache-2.0
tags:
- vitpose
- vitpose_hf
- pose-estimation
---

# ViTPose trained with vitpose_hf

A ViTPose ({model_config.hidden_size} wide, {model_config.num_hidden_layers} blocks, {model_config.decoder} decoder,
{height}x{width} input) with heads: {heads}.

## Evaluation (keypoint AP with ground-truth boxes and flip test)

{table}
## Use

```python
import vitpose_hf
from transformers import pipeline

pose = pipeline("keypoint-detection", model="PATH_OR_REPO")
people = pose("image.jpg", boxes=[[[x, y, w, h]]])
```

## Reproduce

```bash
{command}
```

The full recipe is in `training_config.yaml`.
"""
