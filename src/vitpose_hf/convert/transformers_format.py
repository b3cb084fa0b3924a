"""Our layout <-> transformers' built-in ViTPose ("vitpose"): configs and weights, both ways.

Pure state-dict functions (qkv split / fused, block renames) plus the thin loaders around them. `import vitpose_hf`
installs `load_transformers_vitpose` as the model's loader for built-in checkpoints, so the model file never imports
this module.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..configuration_vitpose import VitPoseConfig
from ..keypoints import KEYPOINT_LAYOUTS, KeypointLayout
from ..modeling_vitpose import checkpoint_model_type

# Per-block renames, ours <-> transformers' built-in (qkv is handled apart: it is split there).
_TRANSFORMERS_BLOCK_RENAMES = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attention.proj": "attention.output.dense",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "mlp.experts": "mlp.experts",
}


# transformers' built-in ---------------------------------------------------------------------------------------------
def is_transformers_vitpose_checkpoint(path_or_id: str | os.PathLike, **kwargs: Any) -> bool:
    """True when the checkpoint's config.json says model_type "vitpose" (transformers' built-in ViTPose)."""
    return checkpoint_model_type(path_or_id, **kwargs) == "vitpose"


def _layout_for_labels(id2label: dict[int, str] | None, num_keypoints: int) -> KeypointLayout:
    """Recognise a built-in checkpoint's keypoint set from its label names (or, failing that, its size)."""
    names = [id2label[i] for i in sorted(id2label)] if id2label and len(id2label) == num_keypoints else None
    for layout in KEYPOINT_LAYOUTS.values():
        if names is not None and [n.lower() for n in names] == [n.lower() for n in layout.keypoints]:
            return layout
    if names is None and num_keypoints == 17:
        return KEYPOINT_LAYOUTS["coco"]
    names = names or [f"keypoint_{i}" for i in range(num_keypoints)]
    return KeypointLayout("custom", tuple(names))


def config_from_transformers(tf_config, num_keypoints: int) -> VitPoseConfig:
    """Our config for a transformers `VitPoseConfig`; layer_norm_eps becomes the original's 1e-6."""
    backbone = tf_config.backbone_config
    image_size = backbone.image_size if isinstance(backbone.image_size, (list, tuple)) else [backbone.image_size] * 2
    patch = backbone.patch_size if isinstance(backbone.patch_size, (list, tuple)) else [backbone.patch_size] * 2
    if patch[0] != patch[1]:
        raise ValueError(f"Only square patches are supported, the checkpoint has {patch}.")
    layout = _layout_for_labels(tf_config.id2label, num_keypoints)
    return VitPoseConfig(
        image_size=list(image_size), patch_size=patch[0], patch_stride=patch[0], num_channels=backbone.num_channels,
        hidden_size=backbone.hidden_size, num_hidden_layers=backbone.num_hidden_layers,
        num_attention_heads=backbone.num_attention_heads, mlp_ratio=backbone.mlp_ratio, qkv_bias=backbone.qkv_bias,
        hidden_act=backbone.hidden_act, num_experts=backbone.num_experts,
        part_features=backbone.part_features if backbone.num_experts > 1 else 0,
        decoder="simple" if tf_config.use_simple_decoder else "classic",
        keypoint_heads=[layout.to_dict()], drop_path_rate=0.0,
    )


def transformers_to_ours(state_dict: dict[str, torch.Tensor], config: VitPoseConfig) -> dict[str, torch.Tensor]:
    """Rename a built-in `VitPoseForPoseEstimation` state dict to ours (single head)."""
    sd = dict(state_dict)
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise KeyError(f"The transformers checkpoint lacks {key!r}.")
        return sd.pop(key)

    pos = take("backbone.embeddings.position_embeddings")
    out["vit.embeddings.position_embeddings"] = pos[:, 1:] + pos[:, :1]
    for suffix in ("weight", "bias"):
        out[f"vit.embeddings.projection.{suffix}"] = take(f"backbone.embeddings.patch_embeddings.projection.{suffix}")
        out[f"vit.layernorm.{suffix}"] = take(f"backbone.layernorm.{suffix}")
    for i in range(config.num_hidden_layers):
        src, dst = f"backbone.encoder.layer.{i}.", f"vit.layers.{i}."
        for suffix in ("weight", "bias"):
            parts = [f"{src}attention.attention.{name}.{suffix}" for name in ("query", "key", "value")]
            if suffix == "bias" and not config.qkv_bias:
                continue
            out[f"{dst}attention.qkv.{suffix}"] = torch.cat([take(p) for p in parts], dim=0)
        for key in [k for k in sd if k.startswith(src)]:
            rest = key[len(src):]
            for ours, theirs in _TRANSFORMERS_BLOCK_RENAMES.items():
                if rest.startswith(theirs + "."):
                    out[dst + ours + rest[len(theirs):]] = sd.pop(key)
                    break
    head_renames = {"head.conv.": "heads.0.final_layer."}
    for n in (1, 2):
        head_renames[f"head.deconv{n}."] = f"heads.0.deconv_layers.{n - 1}.deconv."
        head_renames[f"head.batchnorm{n}."] = f"heads.0.deconv_layers.{n - 1}.batchnorm."
    for key in [k for k in sd if k.startswith("head.")]:
        for theirs, ours in head_renames.items():
            if key.startswith(theirs):
                out[ours + key[len(theirs):]] = sd.pop(key)
                break
    if sd:
        raise KeyError(f"Keys of the transformers checkpoint with no place in VitPoseModel: {sorted(sd)}")
    return out


def ours_to_transformers(state_dict: dict[str, torch.Tensor], config: VitPoseConfig, head: int = 0):
    """Inverse of `transformers_to_ours` for one head."""
    out: dict[str, torch.Tensor] = {}
    pos = state_dict["vit.embeddings.position_embeddings"]
    out["backbone.embeddings.position_embeddings"] = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    width = config.hidden_size
    for key, value in state_dict.items():
        if key.startswith("vit.embeddings.projection."):
            out["backbone.embeddings.patch_embeddings.projection." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("vit.layernorm."):
            out["backbone.layernorm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("vit.layers."):
            match = re.match(r"vit\.layers\.(\d+)\.(.+)", key)
            i, rest = match.group(1), match.group(2)
            dst = f"backbone.encoder.layer.{i}."
            if rest.startswith("attention.qkv."):
                suffix = rest.rsplit(".", 1)[1]
                for name, chunk in zip(("query", "key", "value"), value.split(width, dim=0)):
                    out[f"{dst}attention.attention.{name}.{suffix}"] = chunk
                continue
            for ours, theirs in _TRANSFORMERS_BLOCK_RENAMES.items():
                if rest.startswith(ours + "."):
                    out[dst + theirs + rest[len(ours):]] = value
                    break
            else:
                raise KeyError(f"{key!r} has no counterpart in transformers' ViTPose.")
        elif key.startswith(f"heads.{head}."):
            rest = key[len(f"heads.{head}."):]
            match = re.match(r"deconv_layers\.(\d+)\.(deconv|batchnorm)\.(.+)", rest)
            if match:
                n = int(match.group(1)) + 1
                out[f"head.{match.group(2)}{n}.{match.group(3)}"] = value
            elif rest.startswith("final_layer."):
                out["head.conv." + rest[len("final_layer."):]] = value
    return out


def config_to_transformers(config: VitPoseConfig, head: int = 0):
    """A transformers `VitPoseConfig` for one of our heads; refuses what the built-in cannot express."""
    from transformers import VitPoseBackboneConfig
    from transformers import VitPoseConfig as TransformersVitPoseConfig

    if config.patch_stride != config.patch_size or config.patch_embedding_padding != 2 or config.patch_size != 16:
        raise ValueError("transformers' ViTPose only has 16x16 patches with stride 16 and padding 2.")
    if config.num_knowledge_tokens or set(config.layer_attention_types) != {"full"}:
        raise ValueError("transformers' ViTPose has no knowledge tokens and only full attention.")
    if config.decoder == "classic" and config.decoder_channels != 256:
        raise ValueError(f"transformers' classic decoder has 256 channels, this model has {config.decoder_channels}.")
    layout = config.layouts[head]
    backbone = VitPoseBackboneConfig(
        image_size=list(config.image_size), patch_size=[config.patch_size] * 2, num_channels=config.num_channels,
        hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias,
        hidden_act=config.hidden_act, num_experts=config.num_experts,
        part_features=config.part_features if config.num_experts > 1 else 256,
        layer_norm_eps=config.layer_norm_eps, out_indices=[config.num_hidden_layers],
    )
    return TransformersVitPoseConfig(
        backbone_config=backbone, use_simple_decoder=config.decoder == "simple", scale_factor=4,
        id2label=dict(enumerate(layout.keypoints)), label2id={n: i for i, n in enumerate(layout.keypoints)},
    )


def load_transformers_vitpose(cls, path_or_id, strict: bool = True, **kwargs):
    """Load a built-in "vitpose" checkpoint (local folder or Hub id) as one of our models."""
    from transformers import VitPoseForPoseEstimation

    kwargs.pop("output_loading_info", None)
    kwargs.pop("config", None)
    source, info = VitPoseForPoseEstimation.from_pretrained(path_or_id, output_loading_info=True, **kwargs)
    problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if strict and problems:
        raise ValueError(f"{path_or_id} says model_type 'vitpose' but its weights do not fit that model: {problems}"
                         + _model_type_hint(problems))
    state = source.state_dict()
    config = config_from_transformers(source.config, num_keypoints=state["head.conv.weight"].shape[0])
    model = cls(config)
    model.name_or_path = source.name_or_path  # where it came from, as any from_pretrained model says
    converted = transformers_to_ours(state, config)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"Converted {path_or_id} does not fit: missing {missing}, unexpected {unexpected}.")
    return model.eval()


def _model_type_hint(problems: dict[str, list]) -> str:
    """Name the likely cause when the weights are laid out as ours although config.json says "vitpose"."""
    unexpected = problems.get("unexpected_keys", [])
    if unexpected and all(key.startswith(("vit.", "heads.")) for key in unexpected):
        return (f". The weights are laid out as model_type {VitPoseConfig.model_type!r} (this package's): config.json's "
                f"model_type does not match its weights; set it to {VitPoseConfig.model_type!r}.")
    return ""


def export_to_transformers(model, folder: str | os.PathLike, head: int | str = 0) -> Path:
    """Write a folder that stock `AutoModelForPoseEstimation` loads (one head; experts kept)."""
    from transformers import VitPoseForPoseEstimation

    config = model.config
    head_index = config.dataset_index(head)
    tf_model = VitPoseForPoseEstimation(config_to_transformers(config, head_index))
    state = ours_to_transformers(model.state_dict(), config, head_index)
    tf_model.load_state_dict(state, strict=True)
    folder = Path(folder)
    tf_model.save_pretrained(folder)
    return folder

