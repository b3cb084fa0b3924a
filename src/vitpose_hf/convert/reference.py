"""Checks behind `convert_original_checkpoint(..., verify=True)`.

`original_heatmaps` is ViTPose's forward written out again, directly on an ORIGINAL state dict and in the original's
own way: fused qkv with an explicit softmax, position-embedding slot 0 added to every token, LayerNorm eps 1e-6,
every ViTPose+ expert run on the whole batch and masked by dataset, each head's Sequential(deconv, BN, ReLU) indexed
as in mmpose. It shares no code with `modeling_vitpose` or the key mapping, so agreement between the two is evidence
that the conversion (and our model) is right.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image


class VerificationError(RuntimeError):
    """A converted model that does not reproduce the original's outputs."""


def _layer_norm(x: torch.Tensor, sd: dict, prefix: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[prefix + ".weight"], sd[prefix + ".bias"], eps)


def _linear(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.linear(x, sd[prefix + ".weight"], sd.get(prefix + ".bias"))


def original_features(
    sd: dict[str, torch.Tensor], pixel_values: torch.Tensor, dataset_index: torch.Tensor, num_attention_heads: int,
    patch_stride: int | None = None, patch_padding: int | None = None, eps: float = 1e-6,
) -> torch.Tensor:
    """The original backbone (`ViT` / `ViTMoE.forward_features`): (B, C, Hp, Wp) feature maps."""
    kernel = sd["backbone.patch_embed.proj.weight"].shape[-1]
    stride = patch_stride or kernel
    ratio = kernel // stride
    padding = patch_padding if patch_padding is not None else 4 + 2 * (ratio // 2 - 1)
    x = F.conv2d(pixel_values, sd["backbone.patch_embed.proj.weight"], sd["backbone.patch_embed.proj.bias"],
                 stride=stride, padding=padding)
    batch, width, rows, cols = x.shape
    x = x.flatten(2).transpose(1, 2)
    pos = sd["backbone.pos_embed"]
    x = x + pos[:, 1:] + pos[:, :1]
    head_dim = width // num_attention_heads
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("backbone.blocks."))
    routing = dataset_index.view(-1, 1, 1)
    for i in range(depth):
        block = f"backbone.blocks.{i}"
        h = _layer_norm(x, sd, f"{block}.norm1", eps)
        qkv = _linear(h, sd, f"{block}.attn.qkv").reshape(batch, -1, 3, num_attention_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q * head_dim**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        h = (attn @ v).transpose(1, 2).reshape(batch, -1, width)
        x = x + _linear(h, sd, f"{block}.attn.proj")
        h = F.gelu(_linear(_layer_norm(x, sd, f"{block}.norm2", eps), sd, f"{block}.mlp.fc1"))
        shared = _linear(h, sd, f"{block}.mlp.fc2")
        if f"{block}.mlp.experts.0.weight" in sd:
            num_experts = 1 + max(int(k.split(".")[5]) for k in sd if k.startswith(f"{block}.mlp.experts."))
            part = torch.zeros_like(x[:, :, : width - shared.shape[-1]])
            for e in range(num_experts):
                part = part + _linear(h, sd, f"{block}.mlp.experts.{e}") * (routing == e)
            shared = torch.cat([shared, part], dim=-1)
        x = x + shared
    x = _layer_norm(x, sd, "backbone.last_norm", eps)
    return x.permute(0, 2, 1).reshape(batch, -1, rows, cols)


def original_head(sd: dict[str, torch.Tensor], head: int, features: torch.Tensor, upsample: int = 4) -> torch.Tensor:
    """`TopdownHeatmapSimpleHead.forward` for `keypoint_head` (head 0) or `associate_keypoint_heads.{head - 1}`."""
    prefix = "keypoint_head" if head == 0 else f"associate_keypoint_heads.{head - 1}"
    x = features
    if f"{prefix}.deconv_layers.0.weight" in sd:
        n = 0
        while f"{prefix}.deconv_layers.{n}.weight" in sd:
            x = F.conv_transpose2d(x, sd[f"{prefix}.deconv_layers.{n}.weight"], stride=2, padding=1)
            bn = f"{prefix}.deconv_layers.{n + 1}"
            x = F.batch_norm(x, sd[bn + ".running_mean"], sd[bn + ".running_var"], sd[bn + ".weight"],
                             sd[bn + ".bias"], training=False, eps=1e-5)
            x = F.relu(x)
            n += 3
    else:  # simple decoder: ReLU, bilinear upsampling, 3x3 conv
        x = F.interpolate(F.relu(x), scale_factor=upsample, mode="bilinear", align_corners=False)
    weight = sd[f"{prefix}.final_layer.weight"]
    return F.conv2d(x, weight, sd[f"{prefix}.final_layer.bias"], padding=(weight.shape[-1] - 1) // 2)


@torch.no_grad()
def original_heatmaps(
    sd: dict[str, torch.Tensor], pixel_values: torch.Tensor, head: int, dataset_index: torch.Tensor | int | None = None,
    num_attention_heads: int = 12, patch_stride: int | None = None, eps: float = 1e-6,
) -> torch.Tensor:
    """Heatmaps of one head; `dataset_index` routes the ViTPose+ experts (default: the head's own index)."""
    if dataset_index is None:
        dataset_index = head
    if isinstance(dataset_index, int):
        dataset_index = torch.full((pixel_values.shape[0],), dataset_index, dtype=torch.long)
    features = original_features(sd, pixel_values, dataset_index, num_attention_heads, patch_stride, eps=eps)
    stride = patch_stride or sd["backbone.patch_embed.proj.weight"].shape[-1]
    return original_head(sd, head, features, upsample=stride // 4)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


@torch.no_grad()
def check_against_original(
    model, original_state_dict: dict[str, torch.Tensor], batch_size: int = 2, seed: int = 0, atol: float = 1e-4,
    num_attention_heads: int | None = None,
) -> dict[str, float]:
    """Max abs heatmap difference per head between `model` and `original_heatmaps` on random crops.

    The reference is built from the checkpoint's own architecture, not from the converted config: its heads and
    keypoints come from the state dict's shapes and its attention heads from `num_attention_heads` (those of the
    released size; the config's only when the shapes cannot tell). Every head is checked on a uniform batch; models
    with several heads also on a batch that mixes datasets (the per-dataset routing of experts and heads). Raises
    `VerificationError` beyond `atol` or when the model's heads differ from the checkpoint's.
    """
    from .original import original_architecture

    config = model.config
    architecture = original_architecture(original_state_dict)
    ours = [layout.num_keypoints for layout in config.layouts]
    if ours != architecture["num_keypoints"]:
        raise VerificationError(
            f"The converted model has {len(ours)} head(s) with {ours} keypoints; the checkpoint has "
            f"{architecture['num_heads']} with {architecture['num_keypoints']}."
        )
    heads = num_attention_heads if num_attention_heads is not None else config.num_attention_heads
    if heads != config.num_attention_heads:
        raise VerificationError(
            f"The converted config has num_attention_heads {config.num_attention_heads}, but a checkpoint of this "
            f"size (hidden {architecture['hidden_size']}, {architecture['num_hidden_layers']} blocks) has {heads}."
        )
    sd = {k: v.float() for k, v in original_state_dict.items()}
    generator = torch.Generator().manual_seed(seed)
    height, width = config.image_size
    pixel_values = torch.randn(batch_size, config.num_channels, height, width, generator=generator)
    model = model.float().eval()
    kwargs = dict(num_attention_heads=heads, patch_stride=config.patch_stride,
                  eps=config.layer_norm_eps)
    diffs: dict[str, float] = {}
    references = {}
    for head, name in enumerate(config.head_names):
        ours = model(pixel_values, dataset_index=head).heatmaps
        references[head] = original_heatmaps(sd, pixel_values, head, **kwargs)
        diffs[name] = _max_diff(ours, references[head])
    if len(config.head_names) > 1:
        mixed = torch.arange(batch_size * len(config.head_names)) % len(config.head_names)
        pixels = pixel_values.repeat(len(config.head_names), 1, 1, 1)
        ours = model(pixels, dataset_index=mixed).heatmaps
        worst = 0.0
        for head in range(len(config.head_names)):
            rows = (mixed == head).nonzero().flatten()
            reference = original_heatmaps(sd, pixels[rows], head, dataset_index=mixed[rows], **kwargs)
            worst = max(worst, _max_diff(ours[rows, : reference.shape[1]], reference))
            worst = max(worst, float(ours[rows, reference.shape[1]:].abs().max()) if ours.shape[1] > reference.shape[1] else 0.0)
        diffs["mixed_batch"] = worst
    bad = {name: diff for name, diff in diffs.items() if not diff <= atol}
    if bad:
        raise VerificationError(f"Converted model differs from the original-layout forward beyond {atol}: {bad}")
    return diffs


@torch.no_grad()
def check_split(split_model, full_model, dataset: str, batch_size: int = 2, seed: int = 0, atol: float = 1e-4) -> float:
    """Max abs heatmap difference between a `split_dataset_expert` model and the full model on that dataset."""

    config = full_model.config
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch_size, config.num_channels, *config.image_size, generator=generator)
    diff = _max_diff(split_model.eval()(pixel_values).heatmaps, full_model.eval()(pixel_values, dataset_index=dataset).heatmaps)
    if not diff <= atol:
        raise VerificationError(f"The {dataset!r} split differs from the full model by {diff} (> {atol}).")
    return diff


@torch.no_grad()
def check_published_keypoints(
    model, processor, image_path: str | Path, expected: dict[str, Any], coordinate_tolerance: float = 0.2,
    score_tolerance: float = 0.01,
) -> dict[str, Any]:
    """Run the model as the original tests (crops of `expected["boxes"]`, flip test, UDP) and compare keypoints.

    `expected` holds `boxes` (COCO xywh), `dataset` and `keypoints`: a list of (person, keypoint, x, y, score). The
    published values were printed by transformers' converter for the original weights (its own checks use 0.05);
    the tolerances (image pixels, score) leave room for post-processing details (its heatmap blur differs from the
    original's) while a wrong conversion moves keypoints and scores much further.
    """


    image = Image.open(image_path).convert("RGB")
    boxes = [list(map(float, box)) for box in expected["boxes"]]
    dataset = expected.get("dataset", 0)
    inputs = processor(image, boxes=[boxes], return_tensors="pt")
    pixel_values = inputs["pixel_values"].to(next(model.parameters()).dtype)
    outputs = model(pixel_values, dataset_index=dataset)
    flipped = model(processor.flip_pixel_values(pixel_values), dataset_index=dataset)
    people = processor.post_process_pose_estimation(
        outputs, boxes=[boxes], flipped_outputs=flipped, dataset=model.config.layout(dataset)
    )[0]
    report: dict[str, Any] = {}
    for person, keypoint, x, y, score in expected["keypoints"]:
        found = people[person]
        got_xy = [float(v) for v in found["keypoints"][keypoint]]
        got_score = float(found["scores"][keypoint])
        distance = math.dist(got_xy, (x, y))
        report[f"person{person}/keypoint{keypoint}"] = dict(
            expected=[x, y, score], got=[*got_xy, got_score], distance=distance
        )
        if distance > coordinate_tolerance or abs(got_score - score) > score_tolerance:
            raise VerificationError(
                f"Person {person}, keypoint {keypoint}: got ({got_xy[0]:.3f}, {got_xy[1]:.3f}, score {got_score:.4f}), "
                f"published ({x}, {y}, score {score})."
            )
    return report


__all__ = ["check_against_original", "check_published_keypoints", "check_split", "original_features",
           "original_head", "original_heatmaps"]
