"""Supervised training of a `VitPoseModel` on keypoint datasets (one head each), with distillation as an optional
extra loss: the `RunTask` that `train` gives the run loop."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from ..configuration_vitpose import VitPoseConfig
from ..image_processing_vitpose import VitPoseImageProcessor
from .cards import render_run_card
from .config import TrainingConfig
from .data import RunData, dataset_layout, hf_rows
from .initialization import initialize_model
from .loop import BatchPosition, RunTask, run
from .optim import apply_freeze, build_optimizer_and_scheduler, default_layer_decay_rate, epochs_to_steps

logger = logging.getLogger(__name__)


def model_config_from(config: TrainingConfig) -> VitPoseConfig:
    """The model of a recipe: its variant and overrides, with one head per dataset."""
    heads = [dataset_layout(d).to_dict() for d in config.datasets]
    return VitPoseConfig.from_variant(config.model.variant, **{**config.model.config_overrides, "keypoint_heads": heads})


def evaluate_datasets(model, processor, config: TrainingConfig, show_progress: bool = False,
                      process_state: Any = None) -> dict[str, dict[str, float]]:
    """Keypoint AP (or PCKh) of every dataset with a validation split, with flip test: on this process, or split over
    the processes of `process_state` (call it on all of them; each gets the same metrics as one process would)."""
    from ..evaluation.dataset import evaluate_keypoint_dataset

    results = {}
    for index, section in enumerate(config.datasets):
        if not section.has_validation():
            continue
        if section.hf_dataset is not None:  # ground truth and samples from the validation split's rows
            source = {"rows": hf_rows(section, section.hf_dataset.validation_split),
                      "columns": section.hf_dataset.columns}
        else:
            source = {"annotation_file": section.val_annotation_file, "image_root": section.val_image_root}
        results[section.name] = evaluate_keypoint_dataset(
            model, processor, layout=dataset_layout(section), **source, dataset_index=index,
            detections=section.val_detections, flip_test=config.eval_flip_test,
            batch_size=config.eval_batch_size, metric=section.metric, head_boxes=section.val_head_boxes,
            show_progress=show_progress, process_state=process_state,
        )
    return results


class SupervisedTask(RunTask):
    """Heatmap regression on the datasets of the recipe; the distiller, when configured, adds its loss terms."""

    name = "train"
    config_file = "training_config.yaml"
    config: TrainingConfig

    def __init__(self, config: TrainingConfig):
        super().__init__(config)
        self._model_config = model_config_from(config)
        self.distiller = None

    def model_config(self) -> VitPoseConfig:
        return self._model_config

    def prepare(self, accelerator: Accelerator) -> None:
        """The teacher is loaded and checked against the student before any data is read."""
        if self.config.distillation:
            from . import distillation

            self.distiller = distillation.build_distiller(self.config.distillation)
            self.distiller.configure(self._model_config)

    def build(self, accelerator: Accelerator, data: RunData):
        config, opt = self.config, self.config.optimization
        model, report = initialize_model(self._model_config, config.model.init_from, config.model.init_backbone_only)
        logger.info("%s", report)
        if self.distiller is not None:
            self.distiller.prepare(model, accelerator.device)
        frozen = apply_freeze(model, opt.freeze)
        if frozen:
            logger.info("Frozen (%s): %d parameter tensors", opt.freeze, len(frozen))
        milestones = (opt.lr_decay_milestones if opt.lr_decay_unit == "steps"
                      else epochs_to_steps(opt.lr_decay_milestones, data.steps_per_epoch))
        layer_decay = opt.layer_decay_rate if opt.layer_decay_rate is not None else default_layer_decay_rate(config.model.variant)
        optimizer, scheduler = build_optimizer_and_scheduler(
            model, opt.learning_rate, opt.weight_decay, tuple(opt.betas), layer_decay, opt.warmup_steps,
            opt.warmup_ratio, milestones, opt.lr_decay_gamma,
        )
        return model, optimizer, scheduler

    def loss_terms(self, model, batch: dict[str, Any], position: BatchPosition) -> dict[str, torch.Tensor]:
        outputs = model(pixel_values=batch["pixel_values"], dataset_index=batch["dataset_index"],
                        labels=batch["labels"], target_weight=batch["target_weight"])
        terms = {"loss_gt": outputs.loss}
        if self.distiller is not None:
            terms.update(self.distiller.loss_terms(batch, outputs))
        return terms

    def evaluate(self, model, accelerator: Accelerator, step: int) -> dict[str, Any]:
        processor = VitPoseImageProcessor.from_model_config(self._model_config)
        return evaluate_datasets(model, processor, self.config, show_progress=accelerator.is_local_main_process,
                                 process_state=accelerator)

    def save_final(self, model, folder: Path, results: dict, command: str) -> None:
        """`save_pretrained` of the model and its image processor, with the model card."""
        model.save_pretrained(folder)
        VitPoseImageProcessor.from_model_config(model.config).save_pretrained(folder)
        (folder / "README.md").write_text(render_run_card(model.config, self.config, results, command, self.config_file))


def train(config: TrainingConfig, resume_from_checkpoint: str | None = None, command: str | None = None,
          overwrite_output_dir: bool = False) -> dict:
    """Run the training described by `config`; returns the final evaluation results."""
    return run(SupervisedTask(config), resume_from_checkpoint, command, overwrite_output_dir)
