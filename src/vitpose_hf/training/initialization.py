"""Where a training run's weights start: scratch, our checkpoints, transformers' built-in ViTPose, an original `.pth`,
or a transformers ViT / ViTMAE backbone (the paper's MAE-initialised recipe).

The model is always built from the training config (its heads are the config's datasets); the source provides
what fits. Every backbone weight must come from the source, so a wrong checkpoint is an error, not a silent random
start; a head is taken from the source when the source has a head of the same name and keypoint count (or, for a
single-head source and model, the same number of keypoints), and starts fresh otherwise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..configuration_vitpose import VitPoseConfig
from ..convert.original import convert_original_state_dict, load_original_checkpoint
from ..convert.transformers_format import is_transformers_vitpose_checkpoint, load_transformers_vitpose
from ..convert.vit import vit_to_ours
from ..modeling_vitpose import VitPoseBackbone, VitPoseModel

logger = logging.getLogger(__name__)

_VIT_MODEL_TYPES = ("vit", "vit_mae")


@dataclass
class InitializationReport:
    source: str | None
    kind: str
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.source is None:
            return "Initialised from scratch."
        heads = sorted({key.split(".")[1] for key in self.fresh if key.startswith("heads.")})
        fresh = f"; fresh heads {heads}" if heads else ""
        extra = sorted(key for key in self.fresh if not key.startswith("heads."))
        others = f"; fresh weights {extra}" if extra else ""
        return f"Initialised from {self.source} ({self.kind}): {len(self.loaded)} tensors{fresh}{others}."


def _source_state(source: str, config: VitPoseConfig) -> tuple[dict[str, torch.Tensor], list, str]:
    """(state dict in our names, source head layouts or [] when unknown, kind of source)."""
    if source.endswith((".pth", ".pt")):
        converted, _ = convert_original_state_dict(load_original_checkpoint(source), config, strict=False)
        return converted, [], "original .pth"
    if is_transformers_vitpose_checkpoint(source):
        model = load_transformers_vitpose(VitPoseModel, source, strict=True)  # a missing weight is an error
        return model.state_dict(), model.config.layouts, "transformers vitpose"
    from transformers import AutoConfig, AutoModel

    source_config = AutoConfig.from_pretrained(source)
    if source_config.model_type == VitPoseConfig.model_type:
        is_backbone = "VitPoseBackbone" in (source_config.architectures or [])
        cls = VitPoseBackbone if is_backbone else VitPoseModel
        model = cls.from_pretrained(source, strict=not is_backbone)
        return model.state_dict(), [] if is_backbone else model.config.layouts, "vitpose_hf"
    if source_config.model_type in _VIT_MODEL_TYPES:
        model = AutoModel.from_pretrained(source)
        size = source_config.image_size
        rows, cols = (size, size) if isinstance(size, int) else tuple(size)
        grid = (rows // source_config.patch_size, cols // source_config.patch_size)
        return vit_to_ours(model.state_dict(), grid, config), [], source_config.model_type
    raise ValueError(
        f"model.init_from {source!r} has model_type {source_config.model_type!r}; expected vitpose_hf, vitpose, "
        f"{', '.join(_VIT_MODEL_TYPES)} or an original .pth file."
    )


def _select_heads(
    state: dict[str, torch.Tensor], source_layouts: list, model: VitPoseModel, backbone_only: bool
) -> dict[str, torch.Tensor]:
    """Map source heads onto the model's heads by name (or by keypoint count for one head each)."""
    backbone = {k: v for k, v in state.items() if not k.startswith("heads.")}
    if backbone_only:
        return backbone
    target = model.config.layouts
    if not source_layouts:  # an original .pth: heads were converted in the target's order; keep those that fit
        source_layouts = target
    mapping = {}
    for j, layout in enumerate(target):
        for i, candidate in enumerate(source_layouts):
            same = candidate.name == layout.name or (len(target) == len(source_layouts) == 1)
            if same and candidate.num_keypoints == layout.num_keypoints:
                mapping[j] = i
                break
    heads = {}
    for j, i in mapping.items():
        prefix = f"heads.{i}."
        heads.update({f"heads.{j}." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return {**backbone, **heads}


def initialize_model(config: VitPoseConfig, init_from: str | os.PathLike | None = None,
                     backbone_only: bool = False) -> tuple[VitPoseModel, InitializationReport]:
    """Build `VitPoseModel(config)` and load what `init_from` offers (see the module docstring)."""
    model = VitPoseModel(config)
    if init_from is None:
        return model, InitializationReport(None, "scratch")
    source = str(init_from)
    if source.endswith((".pth", ".pt")) and not Path(source).is_file():
        raise FileNotFoundError(f"model.init_from does not exist: {source}")
    state, source_layouts, kind = _source_state(source, config)
    selected = _select_heads(state, source_layouts, model, backbone_only)
    expected = model.state_dict()
    mismatched = [k for k, v in selected.items() if k in expected and k != "vit.embeddings.position_embeddings"
                  and tuple(v.shape) != tuple(expected[k].shape)]
    if mismatched:
        raise ValueError(f"Weights of {source} do not fit the configured model (shape): {mismatched[:8]}")
    missing, unexpected = model.load_state_dict(selected, strict=False)
    optional = ("vit.embeddings.knowledge_tokens", "heads.")
    missing_backbone = [k for k in missing if not k.startswith(optional) and ".experts." not in k]
    if missing_backbone:
        raise ValueError(f"{source} lacks backbone weights of the configured model: {missing_backbone[:8]}")
    if unexpected:
        raise ValueError(f"{source} has weights the configured model has no place for: {unexpected[:8]}")
    report = InitializationReport(source, kind, sorted(selected), sorted(missing))
    logger.info("%s", report)
    return model, report
