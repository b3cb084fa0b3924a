"""The original mmpose release -> our layout: safe loading, the key map, architecture inference, expert split.

Key names and shapes: REFERENCE section 2 (the released `.pth` files of ViTAE-Transformer/ViTPose). Every step is a
pure function of a state dict (plus the config) apart from `load_original_checkpoint`.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..configuration_vitpose import MODEL_SIZES, VARIANTS, VitPoseConfig
from ..modeling_vitpose import VitPoseModel, resize_position_embeddings
from .vit import POSITION_KEY


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


class OriginalCheckpointError(ValueError):
    """An original checkpoint that cannot be loaded or converted; the message names the file or keys at fault."""


def _shortlist(items, limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _numpy_multiarray() -> Any:
    """numpy's multiarray module: `numpy._core.multiarray` on numpy 2, `numpy.core.multiarray` on numpy 1.x.

    Probed by import, not by attribute: on numpy 1.26 other packages may leave a bare `numpy._core` stub behind.
    """
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")


def _metadata_safe_globals() -> list:
    """Plain-data numpy constructors that mmcv may leave in a checkpoint's `meta` (scores, arrays).

    They only rebuild numbers and arrays, so allowing them keeps `weights_only=True` safe; anything else (a custom
    class, a function) is still refused. Both module paths are allowed, whichever numpy wrote or reads the file.
    """
    import numpy as np

    core = _numpy_multiarray()
    allowed: list = [np.dtype, np.ndarray]
    for name in ("scalar", "_reconstruct"):
        function = getattr(core, name)
        allowed += [(function, f"numpy.core.multiarray.{name}"), (function, f"numpy._core.multiarray.{name}")]
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
    safe_globals = _metadata_safe_globals()
    try:
        with torch.serialization.safe_globals(safe_globals):
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
        if ours == POSITION_KEY:
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


def original_attention_heads(state_dict: dict[str, torch.Tensor]) -> int | None:
    """Attention heads of a checkpoint of a released size (hidden size and depth imply them); None for other sizes,
    whose shapes cannot tell."""
    info = original_architecture(state_dict)
    size = _released_size(info["hidden_size"], info["num_hidden_layers"])
    return MODEL_SIZES[size][2] if size is not None else None


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


