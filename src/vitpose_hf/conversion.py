"""Weight layouts: ours <-> transformers' built-in ViTPose ("vitpose") <-> the original mmpose release.

Every conversion is a pure function of a state dict (plus the config), so the same code serves loading,
exporting, checkpoint conversion and training initialisation.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .configuration_vitpose import MODEL_SIZES, VARIANTS, VitPoseConfig
from .keypoints import KEYPOINT_LAYOUTS, KeypointLayout

_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")

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
    from transformers import PretrainedConfig

    hub_kwargs = {k: v for k, v in kwargs.items() if k in _HUB_KWARGS}
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(str(path_or_id), **hub_kwargs)
    except (OSError, ValueError):
        return False
    return config_dict.get("model_type") == "vitpose"


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
    source = VitPoseForPoseEstimation.from_pretrained(path_or_id, **kwargs)
    state = source.state_dict()
    config = config_from_transformers(source.config, num_keypoints=state["head.conv.weight"].shape[0])
    model = cls(config)
    converted = transformers_to_ours(state, config)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"Converted {path_or_id} does not fit: missing {missing}, unexpected {unexpected}.")
    return model.eval()


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


# transformers' ViT and ViTMAE (backbone initialisation) ---------------------------------------------------------------
_VIT_SKIPPED = re.compile(r"^(decoder|pooler|classifier|embeddings\.(cls_token|mask_token))\b")
_VIT_BLOCK_RENAMES = {
    "attention.o_proj": "attention.proj", "layernorm_before": "norm1", "layernorm_after": "norm2",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}


def vit_to_ours(
    state_dict: dict[str, torch.Tensor], source_grid: tuple[int, int], config: VitPoseConfig
) -> dict[str, torch.Tensor]:
    """Backbone weights of a transformers `ViTModel` / `ViTMAEModel` (as loaded by transformers 5) in our names.

    This is how the paper's MAE-initialised recipe starts: the class token, mask token, pooler and MAE decoder are
    dropped, the class slot of the position embeddings is folded into every patch as the original does, and the
    `source_grid` (rows, cols) of the pre-training resolution is resampled bicubically to this config's grid.
    """
    from .modeling_vitpose import resize_position_embeddings

    sd = {key.removeprefix("vit."): value for key, value in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    unused = []
    for key, value in sd.items():
        if _VIT_SKIPPED.match(key):
            continue
        if key == "embeddings.position_embeddings":
            folded = value[:, 1:] + value[:, :1] if value.shape[1] == source_grid[0] * source_grid[1] + 1 else value
            out[_POSITION_KEY] = resize_position_embeddings(folded, source_grid, config.token_grid())
        elif key.startswith("embeddings.patch_embeddings.projection."):
            out["vit.embeddings.projection." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("layernorm."):
            out["vit." + key] = value
        elif (block := re.match(r"layers\.(\d+)\.(.+)\.(weight|bias)$", key)) is not None:
            index, name, kind = block.groups()
            if name in ("attention.q_proj", "attention.k_proj", "attention.v_proj"):
                continue  # concatenated below
            if name not in _VIT_BLOCK_RENAMES:
                unused.append(key)
                continue
            out[f"vit.layers.{index}.{_VIT_BLOCK_RENAMES[name]}.{kind}"] = value
        else:
            unused.append(key)
    for index in range(config.num_hidden_layers):
        for kind in ("weight", "bias"):
            parts = [sd.get(f"layers.{index}.attention.{p}_proj.{kind}") for p in "qkv"]
            if all(part is not None for part in parts):
                out[f"vit.layers.{index}.attention.qkv.{kind}"] = torch.cat(parts, dim=0)
    if unused:
        raise KeyError(f"Keys of the ViT checkpoint with no place in a ViTPose backbone: {sorted(unused)}")
    return out


# The original mmpose release ----------------------------------------------------------------------------------------
# Key names and shapes: REFERENCE section 2 (the released `.pth` files of ViTAE-Transformer/ViTPose).

ORIGINAL_SKIPPED_KEYS = {
    "backbone.cls_token": "the original forward never uses a class token (multi-dataset files carry an unused one)",
}
# Per-backbone-key renames, original -> ours. Heads are handled by `_original_head_key`.
_ORIGINAL_BACKBONE_RENAMES = [
    (re.compile(r"backbone\.patch_embed\.proj\.(weight|bias)"), r"vit.embeddings.projection.\1"),
    (re.compile(r"backbone\.pos_embed"), "vit.embeddings.position_embeddings"),
    (re.compile(r"backbone\.blocks\.(\d+)\.(norm1|norm2)\.(weight|bias)"), r"vit.layers.\1.\2.\3"),
    (re.compile(r"backbone\.blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)"), r"vit.layers.\1.attention.\2.\3"),
    (re.compile(r"backbone\.blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)"), r"vit.layers.\1.mlp.\2.\3"),
    (re.compile(r"backbone\.blocks\.(\d+)\.mlp\.experts\.(\d+)\.(weight|bias)"), r"vit.layers.\1.mlp.experts.\2.\3"),
    (re.compile(r"backbone\.last_norm\.(weight|bias)"), r"vit.layernorm.\1"),
]
_ORIGINAL_HEAD = re.compile(r"(keypoint_head|associate_keypoint_heads\.(\d+))\.(.+)")
_BATCHNORM_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# Keys every original ViTPose checkpoint has; their absence means "another architecture".
_ORIGINAL_SIGNATURE = ("backbone.pos_embed", "backbone.patch_embed.proj.weight", "backbone.blocks.0.attn.qkv.weight")
_POSITION_KEY = "vit.embeddings.position_embeddings"


class OriginalCheckpointError(ValueError):
    """An original checkpoint that cannot be loaded or converted; the message names the file or keys at fault."""


def _shortlist(items, limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _metadata_safe_globals() -> list:
    """Plain-data numpy constructors that mmcv may leave in a checkpoint's `meta` (scores, arrays).

    They only rebuild numbers and arrays, so allowing them keeps `weights_only=True` safe; anything else (a custom
    class, a function) is still refused.
    """
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch
        return []
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [np.dtype, np.ndarray]
    for name in ("scalar", "_reconstruct"):
        allowed += [getattr(core, name), (getattr(core, name), f"numpy.core.multiarray.{name}")]
    allowed += sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"} - {np.dtype}, key=str)
    return allowed


def load_original_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an original `.pth` with `torch.load(weights_only=True)`: untrusted files never run code.

    Accepts the mmpose layout (`{"state_dict": ..., "meta": ...}`), a `{"model": ...}` dict or a bare state dict, with
    or without the `module.` prefix of (Distributed)DataParallel. Errors name the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Original checkpoint {path} does not exist or is not a file.")
    try:
        with torch.serialization.safe_globals(_metadata_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... depending on the damage
        message = str(error)
        if "Weights only load failed" in message:
            detail = re.search(r"(Unsupported global: GLOBAL \S+|Unsupported operand \d+)", message)
            raise OriginalCheckpointError(
                f"{path} is not a weights-only checkpoint: loading it would need to run pickled code"
                f"{' (' + detail.group(1) + ')' if detail else ''}. Refusing it; re-save its state dict with "
                "torch.save(state_dict) from a trusted environment."
            ) from None
        raise OriginalCheckpointError(
            f"{path} could not be read as a PyTorch checkpoint (truncated or corrupt download?): "
            f"{type(error).__name__}: {message.splitlines()[0] if message else ''}"
        ) from None
    return unwrap_original_state_dict(obj, source=str(path))


def unwrap_original_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint object (see `load_original_checkpoint`), `module.` prefix removed."""
    if not isinstance(obj, dict):
        raise OriginalCheckpointError(f"{source} holds a {type(obj).__name__}, not a dict of weights.")
    for wrapper in ("state_dict", "model"):
        if wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    if not obj:
        raise OriginalCheckpointError(f"{source} holds an empty state dict.")
    bad = [key for key, value in obj.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise OriginalCheckpointError(
            f"{source} is not a state dict: entries that are not tensors: {_shortlist(map(str, bad))}."
        )
    if all(key.startswith("module.") for key in obj):
        obj = {key[len("module."):]: value for key, value in obj.items()}
    return dict(obj)


def _original_head_key(head: int, rest: str) -> str | None:
    prefix = f"heads.{head}."
    if re.fullmatch(r"final_layer\.(weight|bias)", rest):
        return prefix + rest
    match = re.fullmatch(r"deconv_layers\.(\d+)\.(\w+)", rest)
    if match:  # Sequential(deconv, BN, ReLU) per block: indices 3n, 3n+1 (ReLU has no weights)
        index, entry = int(match.group(1)), match.group(2)
        block, position = divmod(index, 3)
        if position == 0 and entry == "weight":
            return f"{prefix}deconv_layers.{block}.deconv.weight"
        if position == 1 and entry in _BATCHNORM_ENTRIES:
            return f"{prefix}deconv_layers.{block}.batchnorm.{entry}"
    return None


def original_key_to_ours(key: str) -> str | None:
    """Our state-dict key for an original key (None when it has no counterpart)."""
    for pattern, template in _ORIGINAL_BACKBONE_RENAMES:
        if pattern.fullmatch(key):
            return pattern.sub(template, key)
    match = _ORIGINAL_HEAD.fullmatch(key)
    if match:
        head = 0 if match.group(2) is None else int(match.group(2)) + 1
        return _original_head_key(head, match.group(3))
    return None


@dataclass
class OriginalConversionReport:
    """What became of every key of an original checkpoint, and what the target model lacked."""

    converted: dict[str, str] = field(default_factory=dict)  # original key -> our key
    transformed: dict[str, str] = field(default_factory=dict)  # original key -> what was done to its values
    skipped: dict[str, str] = field(default_factory=dict)  # original key -> why it is not used
    unexpected: list[str] = field(default_factory=list)  # original keys with no place in the model
    mismatched: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)  # key -> (found, expected)
    missing: list[str] = field(default_factory=list)  # our keys that no original key provides

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.mismatched or self.missing)

    def problems(self) -> str:
        lines = []
        if self.missing:
            lines.append(f"missing (the model needs them, the checkpoint lacks them): {_shortlist(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected (no place in the model): {_shortlist(self.unexpected)}")
        if self.mismatched:
            shapes = [f"{key} {tuple(found)} but expected {tuple(want)}" for key, (found, want) in self.mismatched.items()]
            lines.append(f"mis-shaped: {_shortlist(shapes, 6)}")
        return "; ".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)


def expected_state_shapes(config: VitPoseConfig) -> dict[str, tuple[int, ...]]:
    """Our key -> shape for a config, from a model built on the meta device (no memory, no init cost)."""
    from .modeling_vitpose import VitPoseModel

    with torch.device("meta"):
        model = VitPoseModel(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def convert_original_state_dict(
    state_dict: dict[str, torch.Tensor], config: VitPoseConfig, strict: bool = True,
    source_image_size: tuple[int, int] | None = None,
) -> tuple[dict[str, torch.Tensor], OriginalConversionReport]:
    """Map an original state dict onto ours for `config`; the one mapping used by conversion and training init.

    Every original key ends up converted, skipped (with a reason) or in the report's problems. Position embeddings
    are folded: the original adds slot 0 to every patch token, ours stores `pos[:, 1:] + pos[:, :1]`.

    Args:
        strict: raise `OriginalCheckpointError` naming every missing, unexpected or mis-shaped key. With
            `strict=False` (e.g. initialising a model with other heads), the compatible weights are returned and the
            report lists the rest.
        source_image_size: input size the checkpoint was trained at, when it differs from `config.image_size`; the
            position-embedding grid is then resampled bicubically to the config's grid.
    """
    expected = expected_state_shapes(config)
    report = OriginalConversionReport()
    out: dict[str, torch.Tensor] = {}
    misfits: set[str] = set()  # our keys whose source is mis-shaped: reported once, as mis-shaped
    for key, value in state_dict.items():
        if key in ORIGINAL_SKIPPED_KEYS:
            report.skipped[key] = ORIGINAL_SKIPPED_KEYS[key]
            continue
        ours = original_key_to_ours(key)
        if ours is None or ours not in expected:
            report.unexpected.append(key)
            continue
        want = expected[ours]
        if ours == _POSITION_KEY:
            value, note, want = _fold_position_embeddings(value, config, want, source_image_size)
            if note is None:
                report.mismatched[key] = (list(state_dict[key].shape), list(want))
                misfits.add(ours)
                continue
            report.transformed[key] = note
        elif tuple(value.shape) != want:
            report.mismatched[key] = (list(value.shape), list(want))
            misfits.add(ours)
            continue
        out[ours] = value
        report.converted[key] = ours
    report.missing = sorted(set(expected) - set(out) - misfits)
    if strict and not report.ok:
        raise OriginalCheckpointError(f"The original checkpoint does not fit this {_describe(config)}: {report.problems()}")
    return out, report


def _fold_position_embeddings(
    value: torch.Tensor, config: VitPoseConfig, want: tuple[int, ...], source_image_size: tuple[int, int] | None
) -> tuple[torch.Tensor, str | None, tuple[int, ...]]:
    """(folded embeddings, what was done or None when the shape does not fit, the original shape expected)."""
    from .modeling_vitpose import resize_position_embeddings

    tokens, width = want[1], want[2]
    original_want = (1, tokens + 1, width)
    if value.ndim != 3 or value.shape[0] != 1 or value.shape[2] != width:
        return value, None, original_want
    folded = value[:, 1:] + value[:, :1]
    note = "folded: slot 0 added to every patch position (pos[:, 1:] + pos[:, :1])"
    if folded.shape[1] == tokens:
        return folded, note, original_want
    if source_image_size is None:
        return value, None, original_want
    source_grid = config.token_grid(tuple(source_image_size))
    if source_grid[0] * source_grid[1] != folded.shape[1]:
        return value, None, (1, source_grid[0] * source_grid[1] + 1, width)
    folded = resize_position_embeddings(folded, source_grid, config.token_grid())
    return folded, f"{note}; resampled bicubically from a {source_grid} grid to {tuple(config.token_grid())}", original_want


def _describe(config: VitPoseConfig) -> str:
    experts = f", {config.num_experts} experts" if config.num_experts > 1 else ""
    return (
        f"config (hidden_size {config.hidden_size}, {config.num_hidden_layers} layers{experts}, {config.decoder} "
        f"decoder, heads {config.head_names})"
    )


def original_architecture(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Everything about the architecture that the shapes of an original state dict tell.

    Not inferable from shapes: the number of attention heads, the patch stride (1/16 or 1/8 features) and the input
    size (only the token count is known); `original_config` takes those from the variant or from overrides.
    """
    absent = [key for key in _ORIGINAL_SIGNATURE if key not in state_dict]
    if absent:
        raise OriginalCheckpointError(
            f"This is not an original ViTPose checkpoint: it lacks {', '.join(absent)} "
            f"(its keys start with: {_shortlist(sorted(state_dict), 6)})."
        )
    pos = state_dict["backbone.pos_embed"]
    proj = state_dict["backbone.patch_embed.proj.weight"]
    hidden = int(pos.shape[-1])
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"backbone\.blocks\.(\d+)\.", k)))
    fc1 = state_dict.get("backbone.blocks.0.mlp.fc1.weight")
    experts = {int(m.group(1)) for k in state_dict if (m := re.match(r"backbone\.blocks\.0\.mlp\.experts\.(\d+)\.weight", k))}
    part = int(state_dict["backbone.blocks.0.mlp.experts.0.weight"].shape[0]) if experts else 0
    heads = ["keypoint_head"] + sorted(
        {m.group(0) for k in state_dict if (m := re.match(r"associate_keypoint_heads\.\d+", k))},
        key=lambda name: int(name.rsplit(".", 1)[1]),
    )
    if "keypoint_head.final_layer.weight" not in state_dict:
        raise OriginalCheckpointError("This original checkpoint has no keypoint_head.final_layer.weight: no heatmap head.")
    num_keypoints = [int(state_dict[f"{head}.final_layer.weight"].shape[0]) for head in heads
                     if f"{head}.final_layer.weight" in state_dict]
    classic = "keypoint_head.deconv_layers.0.weight" in state_dict
    info: dict[str, Any] = dict(
        hidden_size=hidden, num_hidden_layers=depth, patch_size=int(proj.shape[-1]), num_channels=int(proj.shape[1]),
        num_tokens=int(pos.shape[1]) - 1, qkv_bias="backbone.blocks.0.attn.qkv.bias" in state_dict,
        mlp_ratio=(int(fc1.shape[0]) / hidden) if fc1 is not None else 4,
        num_experts=len(experts) if experts else 1, part_features=part,
        decoder="classic" if classic else "simple", num_heads=len(heads), num_keypoints=num_keypoints,
    )
    if classic:
        info["decoder_channels"] = int(state_dict["keypoint_head.deconv_layers.0.weight"].shape[1])
    if info["mlp_ratio"] == int(info["mlp_ratio"]):
        info["mlp_ratio"] = int(info["mlp_ratio"])
    return info


def _released_size(hidden: int, depth: int) -> str | None:
    for size, (size_hidden, size_depth, *_rest) in MODEL_SIZES.items():
        if (size_hidden, size_depth) == (hidden, depth):
            return size
    return None


def _variant_family(info: dict[str, Any], size: str) -> str:
    """The released variant with this structure (at `size`), or an error saying why there is none."""
    if info["num_experts"] > 1:
        return f"vitpose-plus-{size}"
    if info["num_heads"] == len(VARIANTS["vitpose-base-coco-aic-mpii"]["keypoint_heads"]):
        return f"vitpose-{size}-coco-aic-mpii"
    if info["num_heads"] == 1:
        return f"vitpose-{size}" + ("-simple" if info["decoder"] == "simple" else "")
    raise OriginalCheckpointError(
        f"No released ViTPose variant has {info['num_heads']} heads without experts; give the variant and "
        "keypoint_heads explicitly."
    )


def infer_variant(state_dict: dict[str, torch.Tensor]) -> str:
    """The released variant (a `VitPoseConfig.from_variant` name) whose key names and shapes the checkpoint has."""
    info = original_architecture(state_dict)
    size = _released_size(info["hidden_size"], info["num_hidden_layers"])
    if size is None:
        raise OriginalCheckpointError(
            f"hidden size {info['hidden_size']} with {info['num_hidden_layers']} blocks is not a released ViTPose size "
            f"({', '.join(f'{k}: {v[0]}/{v[1]}' for k, v in MODEL_SIZES.items())}); name the variant and override its "
            "dimensions, or use original_config(..., num_attention_heads=...)."
        )
    name = _variant_family(info, size)
    if name not in VARIANTS:
        raise OriginalCheckpointError(f"The checkpoint has the structure of {name!r}, which is not a released variant.")
    return name


def _auto_variant_name(state_dict: dict[str, torch.Tensor]) -> str:
    """The released variant the checkpoint is, else the one whose structure (and model card) it shares."""
    info = original_architecture(state_dict)
    name = _variant_family(info, _released_size(info["hidden_size"], info["num_hidden_layers"]) or "base")
    return name if name in VARIANTS else _variant_family(info, "base")


def original_config(state_dict: dict[str, torch.Tensor], variant: str = "auto", **overrides: Any) -> VitPoseConfig:
    """The config to convert an original checkpoint into.

    With a variant name, that variant (plus `overrides`) is used as given and the conversion checks every shape
    against it, so a wrong variant is an error naming the keys that do not fit. With `"auto"`, the dimensions are read
    from the shapes (hidden size, depth, MLP ratio, experts, part features, decoder and its width, patch size) on top
    of the released variant of that structure. Released sizes imply their attention heads; for any other size pass
    `num_attention_heads` (shapes cannot tell it), and `image_size` when the token count is not the variant's 16x12.
    """
    if variant != "auto":
        return VitPoseConfig.from_variant(variant, **overrides)
    info = original_architecture(state_dict)
    size = _released_size(info["hidden_size"], info["num_hidden_layers"])
    if size is None and "num_attention_heads" not in overrides:
        raise OriginalCheckpointError(
            f"Cannot infer the number of attention heads: hidden size {info['hidden_size']} with "
            f"{info['num_hidden_layers']} blocks is not a released ViTPose size. Pass num_attention_heads "
            "(--num-attention-heads)."
        )
    template = _variant_family(info, size or "base")
    if template not in VARIANTS:  # e.g. a ViT-L with the three multi-task heads: the base variant's structure
        template = _variant_family(info, "base")
    inferred = {
        key: info[key] for key in ("hidden_size", "num_hidden_layers", "patch_size", "num_channels", "qkv_bias",
                                   "mlp_ratio", "num_experts", "part_features", "decoder", "decoder_channels")
        if key in info
    }
    if info["patch_size"] != VARIANTS[template].get("patch_size", 16):
        inferred["patch_stride"] = info["patch_size"]
    if size is not None:
        inferred["num_attention_heads"] = MODEL_SIZES[size][2]
    config = VitPoseConfig.from_variant(template, **{**inferred, **overrides})
    rows, cols = config.token_grid()
    if rows * cols != info["num_tokens"]:
        raise OriginalCheckpointError(
            f"backbone.pos_embed has {info['num_tokens']} patch positions but image_size {tuple(config.image_size)} "
            f"gives a {rows}x{cols} grid; pass the image_size the checkpoint was trained at."
        )
    return config


def load_original_weights(
    model, checkpoint: str | os.PathLike | dict[str, torch.Tensor], strict: bool = True,
    source_image_size: tuple[int, int] | None = None,
) -> OriginalConversionReport:
    """Initialise `model` (a VitPoseModel or VitPoseBackbone) from an original checkpoint, e.g. to fine-tune it.

    With `strict=False` only the weights that fit are copied (say, the backbone into a model with other heads) and
    the report lists what was left out. A bare backbone skips the checkpoint's heads (reported as skipped).
    """
    state_dict = checkpoint if isinstance(checkpoint, dict) else load_original_checkpoint(checkpoint)
    original_architecture(state_dict)  # "not a ViTPose checkpoint" beats a list of every key
    converted, report = convert_original_state_dict(
        state_dict, model.config, strict=False, source_image_size=source_image_size
    )
    if not any(key.startswith("heads.") for key in model.state_dict()):
        for key in [k for k in state_dict if _ORIGINAL_HEAD.fullmatch(k)]:
            report.skipped[key] = "a backbone has no heatmap heads"
            report.converted.pop(key, None)
            report.mismatched.pop(key, None)
            if key in report.unexpected:
                report.unexpected.remove(key)
        report.missing = [k for k in report.missing if not k.startswith("heads.")]
        converted = {k: v for k, v in converted.items() if not k.startswith("heads.")}
    if strict and not report.ok:
        raise OriginalCheckpointError(f"The original checkpoint does not fit this {_describe(model.config)}: {report.problems()}")
    model.load_state_dict(converted, strict=strict)
    return report


def split_dataset_expert(model_or_state, config: VitPoseConfig | None = None, dataset: int | str = 0):
    """A plain single-head model for one dataset of a multi-dataset (and/or ViTPose+ MoE) model.

    The dataset's expert is folded into `fc2` (its rows appended after the shared ones, exactly where the MoE layer
    concatenates them), other experts and heads are dropped. The result computes the same heatmaps as the original
    model does for that dataset, at the cost of a dense ViT.
    """
    from .modeling_vitpose import VitPoseModel

    if isinstance(model_or_state, torch.nn.Module):
        state, config = model_or_state.state_dict(), model_or_state.config
    else:
        if config is None:
            raise ValueError("split_dataset_expert needs the config when given a state dict.")
        state = model_or_state
    index = config.dataset_index(dataset)
    new_config = VitPoseConfig.from_dict({
        **config.to_dict(), "num_experts": 1, "part_features": 0, "keypoint_heads": [config.keypoint_heads[index]],
    })
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("heads."):
            head, rest = key[len("heads."):].split(".", 1)
            if int(head) == index:
                out[f"heads.0.{rest}"] = value.clone()  # the split model shares no storage with its source
            continue
        match = re.fullmatch(r"(vit\.layers\.\d+\.mlp\.)(fc2|experts\.(\d+))\.(weight|bias)", key)
        if match is None:
            out[key] = value.clone()
        elif match.group(2) == "fc2":
            if config.num_experts > 1:
                expert = state[f"{match.group(1)}experts.{index}.{match.group(4)}"]
                value = torch.cat([value, expert], dim=0)
            out[key] = value.clone() if config.num_experts == 1 else value
    with torch.device("meta"):  # every weight comes from `out`: no random initialisation of a huge model
        model = VitPoseModel(new_config)
    model.load_state_dict(out, strict=True, assign=True)
    return model.eval()


# Original checkpoint -> model folder (and Hub repo) -------------------------------------------------------------------
COCO_AP_SOURCE = "https://github.com/ViTAE-Transformer/ViTPose"


class VerificationError(RuntimeError):
    """A converted model that does not reproduce the original's outputs."""


@dataclass
class ConversionResult:
    """What `convert_original_checkpoint` did: the files written (or that a dry run would write) and the checks."""

    variant: str
    config: VitPoseConfig
    report: OriginalConversionReport
    verification: dict[str, Any]
    files: list[tuple[str, int]]  # (path inside the folder, bytes)
    output_dir: Path | None  # None for a dry run: nothing was written
    repo_id: str | None = None
    repo_url: str | None = None
    model: Any = field(default=None, repr=False)


def default_model_card_dir() -> Path:
    """`model_cards/` of a source checkout (the cards are project files, not package data)."""
    return Path(__file__).resolve().parents[2] / "model_cards"


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"Output {output_dir} exists and is not a folder.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"Output folder {output_dir} is not empty; pass overwrite=True (--overwrite) to replace it.")


def _replace_folder(staged: Path, output_dir: Path) -> None:
    """Move a completely written folder into place; an existing output is only removed once the new one is in."""
    backup = None
    if output_dir.exists():
        backup = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.old-"))
        os.rmdir(backup)
        os.rename(output_dir, backup)
    try:
        os.rename(staged, output_dir)
    except BaseException:
        if backup is not None:
            os.rename(backup, output_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _list_files(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _structure_hint(state_dict: dict[str, torch.Tensor]) -> str:
    """What the checkpoint itself looks like, to help choose the right variant."""
    info = original_architecture(state_dict)
    try:
        variant = f": variant {infer_variant(state_dict)!r} (try --variant auto)"
    except OriginalCheckpointError:
        variant = ""
    experts = f"{info['num_experts']} experts, " if info["num_experts"] > 1 else ""
    return (
        f"The checkpoint has hidden size {info['hidden_size']}, {info['num_hidden_layers']} blocks, {experts}"
        f"{info['num_heads']} head(s) with {info['num_keypoints']} keypoints and a {info['decoder']} decoder{variant}."
    )


def build_model_from_original(state_dict: dict[str, torch.Tensor], config: VitPoseConfig):
    """A VitPoseModel holding the converted weights (strict: every weight must come from the checkpoint).

    The model is built on the meta device and the weights assigned, so a huge model is not first randomly initialised.
    """
    from .modeling_vitpose import VitPoseModel

    converted, report = convert_original_state_dict(state_dict, config, strict=True)
    with torch.device("meta"):
        model = VitPoseModel(config)
    model.load_state_dict({k: v.contiguous() for k, v in converted.items()}, strict=True, assign=True)
    left = [name for name, tensor in list(model.named_parameters()) + list(model.named_buffers()) if tensor.is_meta]
    if left:
        raise OriginalCheckpointError(f"Weights left uninitialised after conversion: {_shortlist(left)}")
    return model.eval(), report


def _image_processor(config: VitPoseConfig):
    """The processor saved beside the weights (imported lazily: it is not needed to load or run the model)."""
    module = importlib.import_module(".image_processing_vitpose", __package__)
    return module.VitPoseImageProcessor.from_model_config(config)


def render_model_card(
    variant: str, config: VitPoseConfig, repo_id: str | None = None, split_dataset: str | None = None,
    card_dir: str | os.PathLike | None = None,
):
    """The README of a converted variant: `model_cards/template.md` filled from `model_cards/<variant>.md`.

    Metadata: license, pipeline_tag keypoint-detection, library_name transformers (the folder is a plain
    `save_pretrained` one that `AutoModel` loads, through `auto_map` and `trust_remote_code=True` without this package),
    datasets, base_model and a model-index with the published COCO AP.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    card_dir = Path(card_dir) if card_dir is not None else default_model_card_dir()
    variant_file, template = card_dir / f"{variant}.md", card_dir / "template.md"
    for path in (variant_file, template):
        if not path.is_file():
            raise FileNotFoundError(f"Model card source {path} is missing (card_dir={card_dir}).")
    source = ModelCard.load(variant_file)
    meta = source.data.to_dict()
    title = meta["title"] + (f", {split_dataset} only" if split_dataset else "")
    heads = [
        dict(index=i, name=layout.name, num_keypoints=layout.num_keypoints) for i, layout in enumerate(config.layouts)
    ]
    coco_ap = meta.get("coco_ap")
    eval_results = None
    if coco_ap is not None and config.head_names[0] == "coco":
        eval_results = [EvalResult(
            task_type="keypoint-detection", task_name="Human pose estimation", dataset_type="coco",
            dataset_name="COCO val2017 (person detections with 56 AP)", dataset_split="val2017",
            metric_type="ap", metric_name="AP", metric_value=float(coco_ap), verified=False,
            source_url=meta.get("ap_source", COCO_AP_SOURCE), source_name="ViTPose (published result)",
        )]
    card_data = ModelCardData(
        license="apache-2.0", library_name="transformers", pipeline_tag="keypoint-detection",
        tags=["vitpose", "vitpose_hf", "pose-estimation", "keypoint-detection", "vision"],
        datasets=list(meta.get("datasets", [])), base_model=meta.get("base_model"),
        model_name=f"{repo_id.split('/')[-1] if repo_id else variant}", eval_results=eval_results,
    )
    return ModelCard.from_template(
        card_data, template_path=str(template), title=title, description=source.text.strip(),
        repo_id=repo_id or f"<org>/{variant}", variant=variant, split_dataset=split_dataset, heads=heads,
        multi_head=len(heads) > 1, coco_ap=coco_ap, original_checkpoint=meta.get("original_checkpoint"),
        hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, num_experts=config.num_experts,
        image_size=list(config.image_size), heatmap_size=list(config.heatmap_size), decoder=config.decoder,
        vitpose_plus=variant.startswith("vitpose-plus"),
    )


def push_folder_to_hub(
    folder: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create `repo_id` (if needed) and upload `folder` to it. The token comes from `token`, `HF_TOKEN` or
    `hf auth login`, and is never printed."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, repo_type="model", folder_path=str(folder),
        commit_message=commit_message or f"Upload {Path(folder).name} converted from the original ViTPose release",
    )
    return str(url)


def convert_original_checkpoint(
    checkpoint: str | os.PathLike | dict[str, torch.Tensor],
    variant: str = "auto",
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    split_dataset: str | int | None = None,
    verify: bool = False,
    push_to_hub: str | None = None,
    dry_run: bool = False,
    config_overrides: dict[str, Any] | None = None,
    verify_image: str | os.PathLike | None = None,
    published_keypoints: dict[str, dict[str, Any]] | None = None,
    private: bool = False,
    token: str | None = None,
    model_card_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> ConversionResult:
    """Original `.pth` in, a verified `save_pretrained` folder out (and optionally a Hub repo).

    The folder holds model.safetensors, config.json (with auto_map), the image processor config, a model card
    README.md and conversion_report.json. It is written to a temporary folder beside `output_dir` and renamed into
    place only when complete, so on any error `output_dir` is left exactly as it was.

    Args:
        checkpoint: path of the original checkpoint, or an already loaded state dict.
        variant: a `VitPoseConfig.from_variant` name, or "auto" to read it from the key names and shapes.
        overwrite: replace a non-empty `output_dir`.
        split_dataset: write a dense single-head model for this dataset (name or index) instead of all heads.
        verify: compare the converted model with an independent original-layout forward on random inputs (all heads,
            a mixed-dataset batch, the split model) and, given `verify_image` and published values for the variant,
            with the published keypoints on that image.
        published_keypoints: variant -> {"boxes", "dataset", "keypoints": [(person, keypoint, x, y, score)]}, the
            values published for `verify_image` (see scripts/convert_original_checkpoint.py).
        push_to_hub: repo id to create and upload the folder to.
        dry_run: convert and verify, build the folder in a temporary place, report the files that would be written
            and uploaded, then delete it; nothing is written to `output_dir` nor uploaded.
        config_overrides: config fields that win over the variant (e.g. `num_attention_heads` for `"auto"` on an
            unreleased size).
    """
    if output_dir is None and not dry_run:
        raise ValueError("output_dir is required (unless dry_run=True).")
    output = Path(output_dir) if output_dir is not None else None
    if output is not None:
        _check_output_dir(output, overwrite)
    source = Path(checkpoint) if not isinstance(checkpoint, dict) else None
    state_dict = load_original_checkpoint(source) if source is not None else unwrap_original_state_dict(checkpoint)
    original_architecture(state_dict)
    config = original_config(state_dict, variant, **(config_overrides or {}))
    name = variant if variant != "auto" else _auto_variant_name(state_dict)
    log(f"Converting {source or 'state dict'} as {name}: {_describe(config)}")
    try:
        model, report = build_model_from_original(state_dict, config)
    except OriginalCheckpointError as error:
        raise OriginalCheckpointError(f"{source or 'checkpoint'}: {error} {_structure_hint(state_dict)}") from None
    log(f"{len(report.converted)} weights converted; skipped: {report.skipped or 'none'}")

    verification: dict[str, Any] = {}
    checks = importlib.import_module(".original_reference", __package__) if verify else None
    if verify:
        verification["original_reference"] = checks.check_against_original(model, state_dict)
        log(f"Original-layout reference forward: max abs heatmap difference {verification['original_reference']}")
    if split_dataset is not None:
        dataset = config.head_names[config.dataset_index(split_dataset)]
        full_model, model = model, split_dataset_expert(model, dataset=dataset)
        if verify:
            verification["split"] = checks.check_split(model, full_model, dataset)
            log(f"Split {dataset!r} vs the full model: max abs heatmap difference {verification['split']}")
        del full_model
    if verify:
        expected = (published_keypoints or {}).get(name)
        applies = expected is not None and (split_dataset is None or model.config.head_names[0] == expected["dataset"])
        if not applies:
            verification["published"] = f"not checked: no published reference values for {name} {model.config.head_names}"
        elif verify_image is None:
            verification["published"] = "not checked: needs the reference image (COCO val2017 000000000139.jpg)"
        else:
            verification["published"] = checks.check_published_keypoints(
                model, _image_processor(model.config), verify_image, expected
            )
            log(f"Published reference values on {verify_image}: {verification['published']}")

    folder_name = output.name if output is not None else name
    parent = output.parent if output is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder_name}.tmp-"))
    try:
        model.save_pretrained(staged)
        _image_processor(model.config).save_pretrained(staged)
        card = render_model_card(
            name, model.config, repo_id=push_to_hub,
            split_dataset=model.config.head_names[0] if split_dataset is not None else None, card_dir=model_card_dir,
        )
        card.save(staged / "README.md")
        record = dict(
            variant=name, split_dataset=split_dataset, source=source.name if source else None,
            source_sha256=_sha256(source) if source else None, report=report.to_dict(), verification=verification,
        )
        (staged / "conversion_report.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        files = _list_files(staged)
        if dry_run:
            shutil.rmtree(staged, ignore_errors=True)
            return ConversionResult(name, model.config, report, verification, files, None, push_to_hub, None, model)
        _replace_folder(staged, output)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    log(f"Wrote {output} ({len(files)} files)")
    url = None
    if push_to_hub:
        url = push_folder_to_hub(output, push_to_hub, private=private, token=token,
                                 commit_message=f"Convert {name} from the original ViTPose checkpoint")
        log(f"Uploaded to {url}")
    return ConversionResult(name, model.config, report, verification, files, output, push_to_hub, url, model)


__all__ = [
    "config_from_transformers", "config_to_transformers", "export_to_transformers", "is_transformers_vitpose_checkpoint",
    "load_transformers_vitpose", "ours_to_transformers", "transformers_to_ours",
    # original mmpose release
    "ConversionResult", "OriginalCheckpointError", "OriginalConversionReport", "VerificationError",
    "build_model_from_original", "convert_original_checkpoint", "convert_original_state_dict",
    "expected_state_shapes", "infer_variant", "load_original_checkpoint", "load_original_weights",
    "original_architecture", "original_config", "original_key_to_ours", "push_folder_to_hub", "render_model_card",
    "split_dataset_expert", "unwrap_original_state_dict",
]
