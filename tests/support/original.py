"""The original mmpose ViTPose written out again, for synthetic original-format checkpoints.

`OriginalTopDown` mirrors the original classes (`ViT` / `ViTMoE` backbone, `TopdownHeatmapSimpleHead`,
`TopDownMoE.associate_keypoint_heads`), so its state dict has the key names and shapes of the released files. Its
forward, written from the original's maths (fused qkv, position-embedding slot 0 added to every token, LayerNorm eps
1e-6, all experts on the whole batch then masked), is the independent reference converted models are compared with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = (64, 48)  # patch 16, stride 16, padding 2 -> a 4x3 token grid, 16x12 heatmaps
GRID = (4, 3)
KEYPOINTS = {"coco": 17, "aic": 14, "mpii": 16, "ap10k": 17, "apt36k": 17, "wholebody": 133}
# REFERENCE.md section 5: published COCO val AP per variant.
PUBLISHED_AP = {
    "vitpose-small": 73.8, "vitpose-base": 75.8, "vitpose-large": 78.3, "vitpose-huge": 79.1,
    "vitpose-small-simple": 73.5, "vitpose-base-simple": 75.5, "vitpose-large-simple": 78.2,
    "vitpose-huge-simple": 78.9, "vitpose-base-coco-aic-mpii": 77.1, "vitpose-plus-small": 75.8,
    "vitpose-plus-base": 77.0, "vitpose-plus-large": 78.6, "vitpose-plus-huge": 79.4,
}
HEADS = {
    "vitpose-base": ["coco"], "vitpose-base-simple": ["coco"], "vitpose-base-coco-aic-mpii": ["coco", "aic", "mpii"],
    "vitpose-plus-base": ["coco", "aic", "mpii", "ap10k", "apt36k", "wholebody"],
}


# The original architecture, as a module tree with the original attribute names --------------------------------------
class OriginalAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * (dim // self.num_heads) ** -0.5) @ k.transpose(-2, -1)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, -1)
        return self.proj(x)


class OriginalMlp(nn.Module):
    """`Mlp`, or `MoEMlp` when num_expert > 1: shared fc2 narrowed by part_features, one expert per dataset."""

    def __init__(self, dim: int, num_expert: int = 1, part_features: int = 0):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.part_features = part_features if num_expert > 1 else 0
        self.fc2 = nn.Linear(4 * dim, dim - self.part_features)
        if num_expert > 1:
            self.experts = nn.ModuleList(nn.Linear(4 * dim, part_features) for _ in range(num_expert))

    def forward(self, x, indices):
        x = self.act(self.fc1(x))
        shared = self.fc2(x)
        if not self.part_features:
            return shared
        expert_x = torch.zeros(*shared.shape[:-1], self.part_features)
        for i, expert in enumerate(self.experts):
            expert_x = expert_x + expert(x) * (indices.view(-1, 1, 1) == i)
        return torch.cat([shared, expert_x], dim=-1)


class OriginalBlock(nn.Module):
    def __init__(self, dim, num_heads, num_expert, part_features):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = OriginalAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = OriginalMlp(dim, num_expert, part_features)

    def forward(self, x, indices):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x), indices)


class OriginalPatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=16, stride=16, padding=2)


class OriginalViT(nn.Module):
    def __init__(self, dim, depth, num_heads, num_expert=1, part_features=0, cls_token=False, tokens=GRID):
        super().__init__()
        self.patch_embed = OriginalPatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens[0] * tokens[1] + 1, dim))
        if cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(OriginalBlock(dim, num_heads, num_expert, part_features) for _ in range(depth))
        self.last_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, img, indices):
        x = self.patch_embed.proj(img)
        batch, _, rows, cols = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for block in self.blocks:
            x = block(x, indices)
        x = self.last_norm(x)
        return x.permute(0, 2, 1).reshape(batch, -1, rows, cols)


class OriginalHead(nn.Module):
    """`TopdownHeatmapSimpleHead`: classic (2 deconvs, 1x1 conv) or simple (upsample=4, 3x3 conv)."""

    def __init__(self, in_channels, num_keypoints, classic=True, channels=16):
        super().__init__()
        self.classic = classic
        if classic:
            self.deconv_layers = nn.Sequential(
                nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1, output_padding=0, bias=False),
                nn.BatchNorm2d(channels), nn.ReLU(),
                nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, output_padding=0, bias=False),
                nn.BatchNorm2d(channels), nn.ReLU(),
            )
            self.final_layer = nn.Conv2d(channels, num_keypoints, kernel_size=1, padding=0)
        else:
            self.deconv_layers = nn.Identity()
            self.final_layer = nn.Conv2d(in_channels, num_keypoints, kernel_size=3, padding=1)

    def forward(self, x):
        if not self.classic:
            x = F.interpolate(F.relu(x), scale_factor=4, mode="bilinear", align_corners=False)
        return self.final_layer(self.deconv_layers(x))


class OriginalTopDown(nn.Module):
    """`TopDown` / `TopDownMoE`: backbone, keypoint_head and associate_keypoint_heads."""

    def __init__(self, heads, dim=32, depth=2, num_heads=2, classic=True, num_expert=1, part_features=0,
                 channels=16, tokens=GRID):
        super().__init__()
        self.backbone = OriginalViT(dim, depth, num_heads, num_expert, part_features, cls_token=len(heads) > 1,
                                    tokens=tokens)
        self.keypoint_head = OriginalHead(dim, KEYPOINTS[heads[0]], classic, channels)
        if len(heads) > 1:
            self.associate_keypoint_heads = nn.ModuleList(
                OriginalHead(dim, KEYPOINTS[name], classic, channels) for name in heads[1:]
            )

    def forward(self, img, dataset, head):
        indices = torch.full((img.shape[0],), dataset, dtype=torch.long) if isinstance(dataset, int) else dataset
        features = self.backbone(img, indices)
        return (self.keypoint_head if head == 0 else self.associate_keypoint_heads[head - 1])(features)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights of a scale that keeps every path (slot 0 of pos_embed, BN statistics, experts) visible in the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(1000)
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif "norm" in name.split(".")[-2] or name.split(".")[-2] in ("1", "4") and "deconv" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                tensor.copy_(base + 0.2 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim == 1:  # biases
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (1.5 / tensor[0].numel() ** 0.5))
        model.backbone.pos_embed.mul_(0.5 / model.backbone.pos_embed.std())
    return model.eval()


def original_model(variant: str, **kwargs) -> OriginalTopDown:
    plus = variant.startswith("vitpose-plus")
    return randomise(OriginalTopDown(
        HEADS[variant], classic=not variant.endswith("simple"), num_expert=6 if plus else 1,
        part_features=8 if plus else 0, **kwargs,
    ))


def tiny(variant: str) -> dict:
    overrides = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, decoder_channels=16,
                     image_size=list(IMAGE_SIZE))
    if variant.startswith("vitpose-plus"):
        overrides["part_features"] = 8
    return overrides


def save_original(path: Path, state_dict: dict, layout: str = "mmpose") -> Path:
    if layout == "mmpose":
        payload = {"meta": {"epoch": 210, "best_score": np.float64(0.758), "config": "model = dict(...)"},
                   "state_dict": state_dict}
    elif layout == "model":
        payload = {"model": state_dict}
    elif layout == "module":
        payload = {"state_dict": {f"module.{k}": v for k, v in state_dict.items()}}
    else:
        payload = state_dict
    torch.save(payload, path)
    return path


def pixels(batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def folder_snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
