"""The one run loop behind `scripts/train.py` and `scripts/pretrain_mae.py`, shaped like transformers'
`*_no_trainer.py` examples; a `RunTask` (supervised training, MAE pre-training) supplies what differs.

Resuming is exact: model, optimizer, schedule, RNG states and the step count are in every checkpoint
(`checkpoints.py`), and the data order is a function of (seed, epoch) (`MixingSampler`, `TopDownAugmentation`), so
the step count alone says where in the data the run stands. A resumed run therefore finishes with the same weights as
an uninterrupted one. Each process shards the draws itself (the sampler is not re-wrapped by accelerate), which keeps
that position exact with any number of processes.

Phases: check everything (config, files, output directory) -> data -> model, optimizer, schedule -> resume ->
train (logging window, NaN stop, checkpoint and evaluation cadence) -> last checkpoint, evaluation, final/.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..configuration_vitpose import VitPoseConfig
from .checkpoints import (
    TrainingProgress,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from .config import (
    ConfigError,
    RunSection,
    reproduce_command,
    run_overrides,
    save_training_config,
)
from .data import RunData, build_run_data, check_validation_files, ensure_synthetic_data
from .run_dir import (
    OutputDirError,
    OutputDirLock,
    check_output_dir,
    clear_earlier_run,
    install_final,
    recover_final,
    staging_final,
)

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops before the bad step touches any weight."""


@dataclass(frozen=True)
class BatchPosition:
    """Where a micro-batch lies in the run: its epoch and its index in that epoch, on this process."""

    epoch: int
    index: int
    process: int


class RunTask(ABC):
    """What one kind of run gives the loop: its data, model and optimizer, the loss of a batch, its evaluation and
    its final folder. Everything else (cadence, checkpoints, resume, logging, the output directory) is the loop's."""

    #: progress-bar label and the word for the run in messages
    name: str = "train"
    #: where the recipe the run used is written, in OUTPUT and in OUTPUT/final
    config_file: str = "training_config.yaml"

    def __init__(self, config: RunSection):
        self.config = config

    @abstractmethod
    def model_config(self) -> VitPoseConfig:
        """The model's config (it sizes the crops and heatmaps of the data)."""

    def prepare(self, accelerator: Accelerator) -> None:
        """Load what the run needs besides its data and model (a teacher), so that its problems surface before any
        data is read (the loop has already checked the paths and the validation files)."""

    @abstractmethod
    def build(self, accelerator: Accelerator, data: RunData) -> tuple[torch.nn.Module, Any, Any]:
        """(model, optimizer, lr scheduler); the scheduler counts optimizer steps."""

    @abstractmethod
    def loss_terms(self, model: torch.nn.Module, batch: dict[str, Any], position: BatchPosition) -> dict[str, torch.Tensor]:
        """The loss terms of a micro-batch, summed into the loss; each is logged under its own name."""

    def evaluates(self) -> bool:
        return any(d.has_validation() for d in self.config.datasets)

    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator, step: int) -> dict[str, Any]:
        """Metrics of the unwrapped model (eval mode, no grad). Called on every process at once: each evaluates its
        share (`accelerator` is the `process_state` of `vitpose_hf.evaluation`) and all return the same metrics,
        those of a one-process evaluation. Files (pictures) are the main process's to write."""
        return {}

    @abstractmethod
    def save_final(self, model: torch.nn.Module, folder: Path, results: dict, command: str) -> None:
        """Write the finished model (and its card) into the empty `folder`."""

    def tracker_config(self) -> dict[str, Any]:
        return {"learning_rate": self.config.optimization.learning_rate,
                "batch_size": self.config.per_device_batch_size}

    def describe(self, data: RunData, accelerator: Accelerator) -> str:
        total_batch = self.config.per_device_batch_size * accelerator.num_processes * self.config.gradient_accumulation_steps
        return (f"datasets {[d.name for d in self.config.datasets]} (sizes {data.sizes_text()}), {data.max_steps} steps "
                f"({data.steps_per_epoch} per epoch), global batch {total_batch}, {accelerator.num_processes} processes")


def set_train_mode(model: torch.nn.Module) -> None:
    """Training mode, except for modules whose parameters are all frozen: a frozen BatchNorm keeps its statistics
    and a frozen block drops no path, so frozen parts behave exactly as the model they came from."""
    model.train()
    for module in model.modules():
        parameters = list(module.parameters(recurse=False))
        if parameters and not any(p.requires_grad for p in parameters):
            module.eval()


def run(task: RunTask, resume_from_checkpoint: str | None = None, command: str | None = None,
        overwrite_output_dir: bool = False) -> dict:
    """Run `task` to the end; returns the final evaluation."""
    config = task.config
    config.check_paths()
    output_dir = Path(config.output_dir)
    check_output_dir(output_dir, bool(resume_from_checkpoint), overwrite_output_dir)
    accelerator = Accelerator(
        cpu=not torch.accelerator.is_available(), mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps, log_with=config.report_to,
        project_dir=str(output_dir),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger("vitpose_hf").setLevel(logging.WARNING)
    lock = OutputDirLock(output_dir) if accelerator.is_main_process else None
    with logging_redirect_tqdm(), (lock or contextlib.nullcontext()):
        return _run(task, accelerator, resume_from_checkpoint, command, overwrite_output_dir)


def _run(task: RunTask, accelerator: Accelerator, resume_from_checkpoint: str | None, command: str | None,
         overwrite_output_dir: bool) -> dict:
    config = task.config
    output_dir = Path(config.output_dir)
    set_seed(config.seed)

    # Everything that can be checked is checked before step 0; only synthetic data is written meanwhile.
    if accelerator.is_main_process:
        recover_final(output_dir)
        if overwrite_output_dir and not resume_from_checkpoint:
            clear_earlier_run(output_dir)
        for section in config.datasets:
            ensure_synthetic_data(section)
        check_validation_files(config)
    accelerator.wait_for_everyone()
    task.prepare(accelerator)
    data = build_run_data(config, task.model_config(), accelerator.process_index, accelerator.num_processes,
                          pin_memory=accelerator.device.type == "cuda")
    model, optimizer, scheduler = task.build(accelerator, data)
    model, optimizer = accelerator.prepare(model, optimizer)  # the scheduler is stepped here, once per step

    progress, last_checkpoint = TrainingProgress(), None
    signature = {"per_device_batch_size": config.per_device_batch_size, "num_processes": accelerator.num_processes,
                 "gradient_accumulation_steps": config.gradient_accumulation_steps, "seed": config.seed}
    if resume_from_checkpoint:
        last_checkpoint = resolve_checkpoint(resume_from_checkpoint, output_dir)
        progress = load_checkpoint(accelerator, last_checkpoint, model, optimizer, scheduler)
        if progress.data_signature and progress.data_signature != signature:
            raise ValueError(f"Checkpoint {last_checkpoint} was written with {progress.data_signature}, this run has "
                             f"{signature}: the data position cannot be restored.")
        if accelerator.is_main_process:
            drop_log_entries_after(output_dir, progress.completed_steps)
        logger.info("Resumed from %s at step %d", last_checkpoint, progress.completed_steps)
    progress.data_signature = signature
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_training_config(config, output_dir / task.config_file)
    accelerator.wait_for_everyone()

    if config.report_to:
        accelerator.init_trackers(output_dir.name, config={**task.tracker_config(), "max_steps": data.max_steps})
    logger.info("***** %s *****  %s", task.name, task.describe(data, accelerator))

    with tqdm(total=data.max_steps, initial=progress.completed_steps, disable=not accelerator.is_local_main_process,
              desc=task.name, dynamic_ncols=True) as bar:  # closed on errors too: messages start on their own line
        _train(task, accelerator, data, model, optimizer, scheduler, progress, last_checkpoint, bar)

    # The end of the run: last checkpoint, evaluation, final/ (written aside, renamed into place), eval_results.json.
    save_checkpoint(accelerator, model, optimizer, scheduler, progress, output_dir, config.checkpoints_total_limit)
    results = evaluate_and_record(task, accelerator, model, progress.completed_steps)
    if accelerator.is_main_process:
        staging = staging_final(output_dir)
        task.save_final(accelerator.unwrap_model(model), staging, results,
                        command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
        save_training_config(config, staging / task.config_file)
        for folder in (staging, output_dir) if results else ():
            (folder / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        install_final(output_dir)
        if config.push_to_hub:
            from huggingface_hub import upload_folder

            upload_folder(repo_id=config.push_to_hub, folder_path=output_dir / "final",
                          commit_message=f"{task.name} {output_dir.name}, step {progress.completed_steps}")
    accelerator.wait_for_everyone()
    if config.report_to:
        accelerator.end_training()
    return results


def _train(task: RunTask, accelerator: Accelerator, data: RunData, model, optimizer, scheduler,
           progress: TrainingProgress, last_checkpoint: Path | None, bar: tqdm) -> None:
    """The optimizer steps from `progress` to `data.max_steps`."""
    config = task.config
    accumulation, batch_size = config.gradient_accumulation_steps, config.per_device_batch_size
    max_grad_norm = config.optimization.max_grad_norm
    window: dict[str, float] = {}
    window_count, window_start = 0, time.perf_counter()
    set_train_mode(model)
    for epoch in range(progress.completed_steps // data.steps_per_epoch, data.num_epochs):
        if progress.completed_steps >= data.max_steps:
            break
        skip_batches = (progress.completed_steps - epoch * data.steps_per_epoch) * accumulation
        batches = data.epoch_batches(epoch, skip_batches)
        for batch_index in range(skip_batches, data.steps_per_epoch * accumulation):
            batch = {k: v.to(accelerator.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                     for k, v in next(batches).items()}
            with accelerator.accumulate(model):
                terms = task.loss_terms(model, batch, BatchPosition(epoch, batch_index, accelerator.process_index))
                loss = sum(terms.values())
                finite = accelerator.gather(torch.isfinite(loss.detach()).float().reshape(1))  # gloo has no bool
                if not bool(finite.all()):
                    where = (f"the last good checkpoint is {last_checkpoint}" if last_checkpoint
                             else "no checkpoint was written yet")
                    raise NonFiniteLossError(f"Non-finite loss ({loss.item()}) at step {progress.completed_steps + 1} "
                                             f"(epoch {epoch}); stopping before the update, {where}.")
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients and max_grad_norm:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
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
            progress.sampler_state = {"epoch": epoch, "position": (batch_index + 1) * batch_size}
            bar.update(1)

            if step % config.logging_steps == 0 or step == data.max_steps:
                elapsed = time.perf_counter() - window_start
                logs = {key: value / window_count for key, value in window.items()}
                logs["loss"] = sum(value / window_count for value in window.values())
                logs["lr"] = max(group["lr"] for group in optimizer.param_groups)  # the unscaled (top layer) lr
                logs["samples_per_second"] = window_count * batch_size * accelerator.num_processes / max(elapsed, 1e-9)
                if grad_norm is not None:
                    logs["grad_norm"] = float(grad_norm)
                logs["epoch"] = epoch
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k == "lr" or k.startswith("loss")})
                record_logs(accelerator, config, step, logs)
                window, window_count, window_start = {}, 0, time.perf_counter()

            # Checkpoint and evaluation cadence (the last step is the end of the run's business).
            if step < data.max_steps:
                if config.checkpointing_steps and step % config.checkpointing_steps == 0:
                    last_checkpoint = save_checkpoint(accelerator, model, optimizer, scheduler, progress,
                                                      Path(config.output_dir), config.checkpoints_total_limit)
                if config.eval_steps and step % config.eval_steps == 0:
                    evaluate_and_record(task, accelerator, model, step)
            if step >= data.max_steps:
                break


def record_logs(accelerator: Accelerator, config: RunSection, step: int, logs: dict[str, float]) -> None:
    """Training metrics of a logging window: the log, OUTPUT/train_log.jsonl and the trackers."""
    if accelerator.is_main_process:
        logger.info("step %d: %s", step, json.dumps({k: round(v, 6) for k, v in logs.items()}))
        with open(Path(config.output_dir) / "train_log.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **logs}) + "\n")
    if config.report_to:
        accelerator.log(logs, step=step)


def evaluate_and_record(task: RunTask, accelerator: Accelerator, model: torch.nn.Module, step: int) -> dict:
    """Evaluate on all processes together (each its share of the images, gathered into the metrics of one process);
    the main process logs them, appends them to OUTPUT/eval_history.jsonl and sends them to the trackers as
    eval/<dataset>/<metric>. Every process enters the evaluation: its gathers are collectives."""
    if not task.evaluates():
        return {}
    network = accelerator.unwrap_model(model)
    network.eval()
    with torch.no_grad(), accelerator.autocast():
        results = task.evaluate(network, accelerator, step)
    set_train_mode(network)
    if accelerator.is_main_process:
        logger.info("step %d evaluation: %s", step, json.dumps(results))
        with open(Path(task.config.output_dir) / "eval_history.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **results}) + "\n")
        if task.config.report_to:
            accelerator.log(flatten_metrics(results), step=step)
    accelerator.wait_for_everyone()
    return results


def flatten_metrics(results: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{prefix}/{key}"))
        elif isinstance(value, (int, float)):
            flat[f"{prefix}/{key}"] = value
    return flat


def drop_log_entries_after(output_dir: Path, step: int) -> None:
    """Resuming from `step` redoes the steps after it: their entries of the earlier attempt go."""
    for name in ("train_log.jsonl", "eval_history.jsonl"):
        path = output_dir / name
        if not path.is_file():
            continue
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
        if len(kept) != len(lines):
            path.write_text("".join(line + "\n" for line in kept))


def main_of_script(
    script: str, argv: list[str] | None, args: Any, load: Callable[..., RunSection],
    start: Callable[..., dict], extra_dotted: list[str],
) -> int:
    """The body of a run script: load and check the recipe, run it, and turn the errors a user can fix into a message
    and an exit code (2: the recipe or the output directory, 3: a non-finite loss)."""
    overrides, dotted = run_overrides(args)
    command = reproduce_command(script, argv if argv is not None else sys.argv[1:])
    try:
        config = load(args.config, overrides, dotted + extra_dotted)
        config.check_paths()
        check_output_dir(Path(config.output_dir), bool(args.resume_from_checkpoint), args.overwrite_output_dir)
    except (ConfigError, OutputDirError) as error:
        print(f"{'Config' if isinstance(error, ConfigError) else 'Output directory'} error: {error}", file=sys.stderr)
        return 2
    try:
        start(config, resume_from_checkpoint=args.resume_from_checkpoint, command=command,
              overwrite_output_dir=args.overwrite_output_dir)
    except (ConfigError, OutputDirError) as error:
        print(f"Run refused before training: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"Training stopped: {error}", file=sys.stderr)
        return 3
    return 0
