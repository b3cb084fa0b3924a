"""transformers' ViT / ViTMAE backbones -> a ViTPose backbone (the paper's MAE-initialised recipe)."""

from __future__ import annotations

import re

import torch

from ..configuration_vitpose import VitPoseConfig
from ..modeling_vitpose import resize_position_embeddings

POSITION_KEY = "vit.embeddings.position_embeddings"


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
    sd = {key.removeprefix("vit."): value for key, value in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    unused = []
    for key, value in sd.items():
        if _VIT_SKIPPED.match(key):
            continue
        if key == "embeddings.position_embeddings":
            folded = value[:, 1:] + value[:, :1] if value.shape[1] == source_grid[0] * source_grid[1] + 1 else value
            out[POSITION_KEY] = resize_position_embeddings(folded, source_grid, config.token_grid())
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
