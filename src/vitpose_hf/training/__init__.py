"""Training ViTPose: the recipe (layer-wise lr decay, warmup then step decay), initialisation from any ViTPose or
ViT checkpoint, multi-dataset heads, evaluation, checkpoint and resume. `scripts/train.py` is the entry point.

Submodules are imported on first use, so importing one part does not pull in the others.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "ConfigError": "config",
    "TrainingConfig": "config",
    "load_config": "config",
    "load_training_config": "config",
    "initialize_model": "initialization",
    "layer_decay_parameter_groups": "optim",
    "parameter_settings": "optim",
    "apply_freeze": "optim",
    "build_distiller": "distillation",
    "VitPoseMaskedAutoencoder": "mae",
    "load_mae_config": "mae",
    "pretrain": "mae",
    "NonFiniteLossError": "trainer",
    "train": "trainer",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
