"""The model card of a model this package trained or MAE-pre-trained: one template (`assets/training_model_card.md`,
shipped with the package) rendered through huggingface_hub's `ModelCard.from_template`, like the release cards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..configuration_vitpose import VitPoseConfig

TEMPLATE = Path(__file__).resolve().parents[1] / "assets" / "training_model_card.md"
# The metrics a card shows per dataset, in this order, where the evaluation gave them.
CARD_METRICS = ("AP", "AP50", "AP75", "AR", "PCKh", "PCKh@0.1")


def render_run_card(
    model_config: VitPoseConfig, config: Any, results: dict, command: str, recipe_file: str,
    mask_ratio: float | None = None,
) -> str:
    """The README of OUTPUT/final: what the model is, its metrics, how to use it, the command that reproduces it.

    Args:
        config: the run's recipe (its `datasets` are named in the card).
        results: the final evaluation (per dataset for a pose model; {"eval_loss"} for MAE).
        mask_ratio: given for an MAE-pre-trained backbone (no heads; the card says how to start a pose model from it).
    """
    from huggingface_hub import ModelCard, ModelCardData

    mae = mask_ratio is not None
    sections = {d.name: d for d in config.datasets}
    metrics = [
        {"dataset": name, "metric": key, "value": f"{values[key]:.4f}",
         "boxes": "detector (val_detections)" if getattr(sections.get(name), "val_detections", None) else "ground truth"}
        for name, values in results.items() if isinstance(values, dict)
        for key in CARD_METRICS if key in values
    ]
    card_data = ModelCardData(
        license="apache-2.0", library_name="transformers",
        pipeline_tag=None if mae else "keypoint-detection",
        tags=["vitpose", "vitpose_hf", *(["mae", "image-feature-extraction"] if mae else ["pose-estimation", "keypoint-detection"])],
    )
    loss = results.get("eval_loss")
    return str(ModelCard.from_template(
        card_data, template_path=str(TEMPLATE),
        title="ViTPose backbone pre-trained with MAE on person crops" if mae else "ViTPose trained with vitpose_hf",
        mae=mae, mask_ratio=f"{mask_ratio:.0%}" if mae else None,
        eval_loss=f"{loss:.4f}" if isinstance(loss, float) else "not measured",
        dataset_names=", ".join(f"{d.name} ({d.source()})" for d in config.datasets),
        hidden_size=model_config.hidden_size, num_hidden_layers=model_config.num_hidden_layers,
        decoder=model_config.decoder, image_size=list(model_config.image_size),
        heads=[{"index": i, "name": layout.name, "num_keypoints": layout.num_keypoints}
               for i, layout in enumerate(model_config.layouts)] if not mae else [],
        metrics=metrics, command=command, recipe_file=recipe_file,
    ))
