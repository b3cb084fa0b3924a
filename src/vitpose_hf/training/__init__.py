"""Training ViTPose: the recipe (layer-wise lr decay, warmup then step decay), initialisation from any ViTPose or
ViT checkpoint, multi-dataset heads, evaluation, checkpoint and resume. `scripts/train.py` is the entry point.

Submodules are imported on first use, so importing one part does not pull in the others.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "config": ("ConfigError", "TrainingConfig", "load_config", "load_training_config"),
    "initialization": ("initialize_model",),
    "optim": ("layer_decay_parameter_groups", "parameter_settings", "apply_freeze"),
    "distillation": ("build_distiller",),
    "mae": ("VitPoseMaskedAutoencoder", "load_mae_config", "pretrain"),
    "trainer": ("NonFiniteLossError", "train"),
})
