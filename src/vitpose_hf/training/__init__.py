"""Training ViTPose: the recipe (layer-wise lr decay, warmup then step decay), initialisation from any ViTPose or
ViT checkpoint, multi-dataset heads, distillation, MAE pre-training, evaluation, checkpoint and resume.
`scripts/train.py` and `scripts/pretrain_mae.py` are the entry points.

    config.py          the recipe: YAML (with `base:`), typed overrides, every check before the run
    loop.py            the one run loop (`RunTask`: what supervised training and MAE pre-training supply)
    supervised.py      `train`: heatmap regression, with distillation as an optional extra loss
    mae.py             `pretrain`: MAE pre-training of the backbone on person crops
    distillation.py    teacher, output and knowledge-token distillation
    data.py            the run's datasets, mixture, loader and validation-file checks
    checkpoints.py     checkpoints written and read without pickle
    run_dir.py         the output directory: lock, earlier runs, a final/ renamed into place
    cards.py           the model card of a trained or MAE-pre-trained model
    optim.py           AdamW with layer-wise lr decay, schedules, freezing
    initialization.py  starting weights from any supported checkpoint

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
    "loop": ("NonFiniteLossError",),
    "supervised": ("train",),
})
