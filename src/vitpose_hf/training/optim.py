"""The optimisation recipe of ViTPose: AdamW with layer-wise lr decay, linear warmup then step decay, freezing.

The model says which layer each parameter belongs to (`parameter_layer_ids`, the original's
`LayerDecayOptimizerConstructor` ids: embeddings 0, block i i + 1, the rest depth + 1) and which parameters take no
weight decay besides the 1-D ones (`no_weight_decay_names`), so no parameter name is parsed here. A parameter's lr is
scaled by `rate ** (depth + 1 - layer_id)`.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

import torch
from torch import nn

# Layer-wise lr decay rate of the released ViTPose recipes, per model size.
LAYER_DECAY_RATES: dict[str, float] = {"small": 0.8, "base": 0.75, "large": 0.8, "huge": 0.85}

# What each partial fine-tuning setting of paper Table 5 keeps frozen.
FREEZE_PATTERNS: dict[str, re.Pattern | None] = {
    "none": None,
    "attention": re.compile(r"^vit\.layers\.\d+\.attention\."),
    "ffn": re.compile(r"^vit\.layers\.\d+\.mlp\."),
    "backbone": re.compile(r"^vit\."),
}


def default_layer_decay_rate(variant: str) -> float:
    """The released rate for the size named in a variant ("vitpose-plus-large" -> 0.8); 0.75 (base) otherwise."""
    for size, rate in LAYER_DECAY_RATES.items():
        if size in variant.split("-"):
            return rate
    return LAYER_DECAY_RATES["base"]


@dataclass
class ParameterSetting:
    lr_scale: float
    weight_decay: float


def parameter_settings(
    model: nn.Module, weight_decay: float, layer_decay_rate: float
) -> dict[str, ParameterSetting]:
    """Per trainable parameter: its lr scale and weight decay under the recipe.

    `model` declares `parameter_layer_ids()` and `no_weight_decay_names()` (as `VitPosePreTrainedModel` does);
    1-D parameters (biases, norms) never decay.
    """
    depth = model.config.num_hidden_layers
    layer_ids, no_decay = model.parameter_layer_ids(), model.no_weight_decay_names()
    settings = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decays = parameter.ndim > 1 and name not in no_decay
        settings[name] = ParameterSetting(layer_decay_rate ** (depth + 1 - layer_ids[name]),
                                          weight_decay if decays else 0.0)
    return settings


def layer_decay_parameter_groups(
    model: nn.Module, learning_rate: float, weight_decay: float, layer_decay_rate: float
) -> list[dict]:
    """AdamW parameter groups, one per (layer id, decay or not), each with `lr` and its `lr_scale`."""
    parameters = dict(model.named_parameters())
    groups: dict[tuple[float, float], dict] = {}
    for name, setting in parameter_settings(model, weight_decay, layer_decay_rate).items():
        key = (setting.lr_scale, setting.weight_decay)
        group = groups.setdefault(key, {
            "params": [], "names": [], "lr": learning_rate * setting.lr_scale,
            "lr_scale": setting.lr_scale, "weight_decay": setting.weight_decay,
        })
        group["params"].append(parameters[name])
        group["names"].append(name)
    return list(groups.values())


def apply_freeze(model: nn.Module, freeze: str) -> list[str]:
    """Freeze the parameters of a paper Table 5 setting ("attention", "ffn", "backbone"); returns their names."""
    if freeze not in FREEZE_PATTERNS:
        raise ValueError(f"freeze must be one of {sorted(FREEZE_PATTERNS)}, got {freeze!r}.")
    pattern = FREEZE_PATTERNS[freeze]
    frozen = []
    if pattern is None:
        return frozen
    for name, parameter in model.named_parameters():
        if pattern.search(name):
            parameter.requires_grad_(False)
            frozen.append(name)
    if not frozen:
        raise ValueError(f"freeze={freeze!r} matched no parameter of {type(model).__name__}.")
    return frozen


def warmup_step_decay(
    step: int, warmup_steps: int, warmup_ratio: float, milestones: list[int], gamma: float
) -> float:
    """The lr factor at optimizer step `step`: mmcv's linear warmup from `warmup_ratio`, times step decay.

    `milestones` are sorted optimizer steps; the factor drops by `gamma` at each one reached.
    """
    factor = gamma ** bisect.bisect_right(milestones, step)
    if step < warmup_steps:
        factor *= 1 - (1 - step / warmup_steps) * (1 - warmup_ratio)
    return factor


def build_optimizer_and_scheduler(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float],
    layer_decay_rate: float,
    warmup_steps: int,
    warmup_ratio: float,
    milestone_steps: list[int],
    gamma: float,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    groups = layer_decay_parameter_groups(model, learning_rate, weight_decay, layer_decay_rate)
    if not groups:
        raise ValueError("No trainable parameters: every parameter is frozen.")
    optimizer = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k != "names"} for g in groups], lr=learning_rate, betas=tuple(betas)
    )
    milestones = sorted(int(m) for m in milestone_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_step_decay(step, warmup_steps, warmup_ratio, milestones, gamma)
    )
    return optimizer, scheduler


def epochs_to_steps(epochs: list[int], steps_per_epoch: int) -> list[int]:
    return [int(math.ceil(e * steps_per_epoch)) for e in epochs]
