"""Checkpoints of a run, written and read without pickle.

A checkpoint folder holds exactly:

    model.safetensors        the (unwrapped) model's state
    optimizer.pt             the optimizer's state dict: tensors and plain numbers only, read with `weights_only=True`
    state.json               progress (step, data position, the settings that fix it), the lr schedule, the grad scaler
    rng_state_<rank>.safetensors  each process's torch / CUDA / numpy / Python generator states

accelerate's `save_state` is not used: it writes registered objects with pickle and reads them back with
`weights_only=False`, so a checkpoint from an untrusted place could run code. Anything else found in a checkpoint
folder (`*.pkl`, `*.bin`, ...) is ignored with a warning and never opened.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
MODEL_FILE, OPTIMIZER_FILE, STATE_FILE = "model.safetensors", "optimizer.pt", "state.json"
RNG_FILE = re.compile(r"rng_state_(\d+)\.safetensors")
STATE_FORMAT = 1


@dataclass
class TrainingProgress:
    """Step count and data position. The data order is a function of (seed, epoch), so the step count says where in
    the data a run stands as long as `data_signature` (batch, processes, accumulation, seed) is unchanged."""

    completed_steps: int = 0
    sampler_state: dict[str, int] = field(default_factory=dict)
    data_signature: dict[str, Any] = field(default_factory=dict)


# Finding checkpoints ----------------------------------------------------------------------------------------------
def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a checkpoint is renamed into place only once fully written)."""
    folder = Path(output_dir) / "checkpoints"
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if re.fullmatch(rf"{CHECKPOINT_PREFIX}\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def resolve_checkpoint(resume_from: str, output_dir: str | Path) -> Path:
    """`latest` (the newest checkpoint of the run) or a checkpoint folder."""
    if resume_from == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise FileNotFoundError(f"--resume-from-checkpoint latest: no checkpoint in {Path(output_dir) / 'checkpoints'}.")
        return checkpoints[-1]
    path = Path(resume_from)
    if not path.is_dir():
        raise FileNotFoundError(f"Checkpoint folder not found: {resume_from}")
    return path


# Random generator states ------------------------------------------------------------------------------------------
def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """This process's generator states as tensors (safetensors) and small JSON strings (its metadata)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = state
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["python"] = torch.tensor(internal, dtype=torch.int64)
    metadata = {"numpy": json.dumps([kind, int(position), int(has_gauss), float(cached_gaussian)]),
                "python": json.dumps([version, gauss_next])}
    return tensors, metadata


def restore_rng_state(path: Path) -> None:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda_{i}"] for i in range(len([k for k in tensors if k.startswith("cuda_")]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, position, has_gauss, cached_gaussian = json.loads(metadata["numpy"])
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    version, gauss_next = json.loads(metadata["python"])
    random.setstate((version, tuple(int(v) for v in tensors["python"].tolist()), gauss_next))


# Saving and loading -----------------------------------------------------------------------------------------------
def save_checkpoint(
    accelerator: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
    progress: TrainingProgress, output_dir: Path, total_limit: int | None,
) -> Path:
    """Write checkpoint-<step> into a temporary folder renamed at the end: a killed save never looks like a
    checkpoint. Keeps the newest `total_limit` checkpoints (all with None)."""
    folder = output_dir / "checkpoints"
    final = folder / f"{CHECKPOINT_PREFIX}{progress.completed_steps}"
    staging = folder / f".tmp-{CHECKPOINT_PREFIX}{progress.completed_steps}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    tensors, metadata = capture_rng_state()
    save_file(tensors, str(staging / f"rng_state_{accelerator.process_index}.safetensors"), metadata=metadata)
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), str(staging / MODEL_FILE))
        torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        state = {"format": STATE_FORMAT, "progress": asdict(progress), "scheduler": scheduler.state_dict(),
                 "scaler": scaler}
        (staging / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    accelerator: Accelerator, folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
) -> TrainingProgress:
    """Restore what `save_checkpoint` wrote, reading no pickle; returns the progress it holds."""
    folder = Path(folder)
    state_file = folder / STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"{folder} is not a checkpoint of this trainer: it has no {STATE_FILE} (checkpoints written "
                         "with pickle, such as accelerate's save_state, are not loaded).")
    known = {MODEL_FILE, OPTIMIZER_FILE, STATE_FILE}
    ignored = sorted(p.name for p in folder.iterdir() if p.name not in known and not RNG_FILE.fullmatch(p.name))
    if ignored and accelerator.is_main_process:
        logger.warning("Ignoring files of %s that are not part of a checkpoint (never opened): %s", folder, ignored)
    try:
        state = json.loads(state_file.read_text())
        progress = TrainingProgress(**state["progress"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{state_file} is not a readable checkpoint state: {error}") from error
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{state_file} has format {state.get('format')!r}; this trainer reads format {STATE_FORMAT}.")
    load_model(accelerator.unwrap_model(model), str(folder / MODEL_FILE), strict=True,
               device=str(accelerator.device))
    optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True))
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler") is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    rng_file = folder / f"rng_state_{accelerator.process_index}.safetensors"
    if rng_file.is_file():
        restore_rng_state(rng_file)
    else:
        logger.warning("%s has no generator state for process %d: the run continues, not bit-exactly.", folder,
                       accelerator.process_index)
    return progress
