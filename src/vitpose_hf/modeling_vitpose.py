"""ViTPose: a plain ViT encoder and one heatmap head per keypoint dataset.

The encoder follows the original release exactly (fused qkv, pre-norm blocks, LayerNorm eps 1e-6, patch padding,
the position embedding's extra slot folded into every token, a final LayerNorm), so converted weights reproduce the
original's heatmaps. Differences are in how work is scheduled, never in the maths: each head and each ViTPose+ expert
only computes the samples of its own dataset.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneMixin
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_vitpose import INPUT_RESOLUTIONS, VitPoseConfig, parse_image_size
from .window_attention import window_self_attention


@dataclass
class VitPoseEstimatorOutput(ModelOutput):
    """
    Args:
        loss: target-weighted MSE between `heatmaps` and `labels` (the recipe's JointsMSELoss), when labels are given.
        heatmaps: (batch, K, H/4, W/4). In a batch mixing heads with different K, each sample's channels beyond its
            own head's K are zero.
        hidden_states: encoder input and the output of every block, (batch, tokens, hidden) each.
        attentions: attention probabilities of every block, (batch, heads, tokens, tokens) each.
    """

    loss: torch.Tensor | None = None
    heatmaps: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class VitPoseEncoderOutput(ModelOutput):
    feature_maps: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def joints_mse_loss(
    heatmaps: torch.Tensor, labels: torch.Tensor, target_weight: torch.Tensor | None = None,
    num_keypoints: torch.Tensor | None = None,
) -> torch.Tensor:
    """The recipe's JointsMSELoss: `0.5 * mean((pred * w - gt * w) ** 2)` over joints and pixels.

    With `num_keypoints` (B,), sample b averages over its first `num_keypoints[b]` channels only (padding channels of
    a mixed-head batch do not count), and the batch loss is the mean over samples. With one head this is exactly the
    original; with several it equals the original's sum of per-head masked losses.
    """
    if target_weight is None:
        target_weight = torch.ones(labels.shape[:2], dtype=heatmaps.dtype, device=heatmaps.device)
    squared = ((heatmaps.float() - labels.float()) * target_weight.float()[..., None, None]).pow(2)
    per_joint = squared.flatten(2).mean(-1)  # (B, K)
    if num_keypoints is None:
        return 0.5 * per_joint.mean()
    channels = torch.arange(per_joint.shape[1], device=per_joint.device)
    valid = channels[None, :] < num_keypoints[:, None]
    per_sample = (per_joint * valid).sum(1) / num_keypoints.clamp(min=1)
    return 0.5 * per_sample.mean()


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch of random samples, rescaling the kept ones."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def resize_position_embeddings(position_embeddings: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]):
    """Bicubic resampling of a (1, rows*cols, C) position-embedding grid, the usual way to change input size."""
    if tuple(old_grid) == tuple(new_grid):
        return position_embeddings
    dim = position_embeddings.shape[-1]
    grid = position_embeddings.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode="bicubic", align_corners=False)
    return grid.to(position_embeddings.dtype).permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)


def stored_position_grid(num_positions: int, config: VitPoseConfig) -> tuple[int, int]:
    """The token grid of a stored position embedding with `num_positions` slots, when it can be told for sure.

    A state dict carries no grid, only a count; the grid is taken as the one with this model's aspect ratio or that
    of an input-size preset at stride 16 or 8, and must be the only such candidate.
    """
    rows, cols = config.token_grid()
    candidates = {
        (r, num_positions // r) for r in range(1, num_positions + 1)
        if num_positions % r == 0 and r * cols == (num_positions // r) * rows
    }
    probe = copy.copy(config)
    probe.patch_padding = None  # the original's padding rule for each stride
    for stride in (config.patch_size, config.patch_size // 2):
        probe.patch_stride = stride
        candidates |= {probe.token_grid(size) for size in INPUT_RESOLUTIONS.values()}
    candidates = {grid for grid in candidates if grid[0] * grid[1] == num_positions}
    if len(candidates) != 1:
        raise ValueError(
            f"Cannot tell the token grid of stored position embeddings with {num_positions} positions "
            f"(candidates {sorted(candidates) or 'none'}) for a {rows}x{cols} model; load the checkpoint at its own "
            "image_size and call `model.with_resolution(...)`, or use `from_pretrained(..., image_size=...)`."
        )
    return candidates.pop()


class VitPoseEmbeddings(nn.Module):
    """Patch embedding plus position embedding (and optional knowledge tokens appended after them).

    The original keeps a (1, N+1, C) position embedding and adds slot 0 to every patch; here it is stored folded,
    (1, N, C), which computes the same sum.
    """

    def __init__(self, config: VitPoseConfig):
        super().__init__()
        self.config = config
        self.grid = config.token_grid()
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size,
            stride=config.patch_stride, padding=config.patch_embedding_padding,
        )
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], config.hidden_size))
        if config.num_knowledge_tokens:
            token_dim = config.knowledge_token_dim or config.hidden_size
            self.knowledge_tokens = nn.Parameter(torch.zeros(1, config.num_knowledge_tokens, token_dim))
        else:
            self.knowledge_tokens = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Resample stored position embeddings of another input size or patch stride (bicubic) on `load_state_dict`."""
        key = prefix + "position_embeddings"
        stored = state_dict.get(key)
        if stored is not None and stored.ndim == 3 and stored.shape[-1] == self.position_embeddings.shape[-1]:
            if stored.shape[1] != self.position_embeddings.shape[1]:
                state_dict[key] = resize_position_embeddings(
                    stored, stored_position_grid(stored.shape[1], self.config), self.grid
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def knowledge_token_embeddings(self) -> torch.Tensor:
        """The knowledge tokens at this model's width.

        A token learned with a teacher of another width crosses through a fixed, parameter-free map: truncation
        when the student is narrower, zero padding when wider, rescaled to keep the token's RMS. It is fixed so that
        the token stays the teacher's knowledge rather than something the student re-learns.
        """
        tokens = self.knowledge_tokens
        width = self.config.hidden_size
        if tokens.shape[-1] == width:
            return tokens
        if tokens.shape[-1] > width:
            crossed = tokens[..., :width]
        else:
            crossed = F.pad(tokens, (0, width - tokens.shape[-1]))
        rms_in = tokens.pow(2).mean(-1, keepdim=True).clamp_min(1e-12).sqrt()
        rms_out = crossed.pow(2).mean(-1, keepdim=True).clamp_min(1e-12).sqrt()
        return crossed * (rms_in / rms_out)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values must be (batch, {self.config.num_channels}, height, width), got {tuple(pixel_values.shape)}."
            )
        embeddings = self.projection(pixel_values.to(self.projection.weight.dtype))
        grid = (embeddings.shape[2], embeddings.shape[3])
        # Contiguous tokens: otherwise the residual stream inherits the transposed layout and every LayerNorm copies.
        embeddings = embeddings.flatten(2).transpose(1, 2).contiguous()
        embeddings = embeddings + resize_position_embeddings(self.position_embeddings, self.grid, grid)
        if self.knowledge_tokens is not None:
            tokens = self.knowledge_token_embeddings().to(embeddings.dtype).expand(embeddings.shape[0], -1, -1)
            embeddings = torch.cat([embeddings, tokens], dim=1)
        return embeddings, grid


def eager_attention_forward(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = weights.softmax(dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class VitPoseAttention(nn.Module):
    """Multi-head self-attention with the original's fused qkv, dispatched to sdpa / eager / flash."""

    def __init__(self, config: VitPoseConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, tokens, width = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        output, weights = self.attend_heads(query, key, value, attention_mask, output_attentions)
        return self.proj(output.reshape(batch, tokens, width)), weights

    def attend_heads(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, heads, Tq, d) queries over (B, heads, Tk, d) keys and values -> (B, Tq, heads, d), weights or None."""
        implementation = "eager" if output_attentions else self.config._attn_implementation
        if attention_mask is not None and implementation not in ("eager", "sdpa"):
            implementation = "sdpa"  # flash kernels take padding masks only; window masks need sdpa
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        return attention(
            self, query, key, value, attention_mask, scaling=self.scaling,
            dropout=self.config.attention_dropout if self.training else 0.0,
        )


class VitPoseMLP(nn.Module):
    """fc1 -> GELU -> fc2; with experts (ViTPose+), fc2 is narrowed and each sample's dataset expert adds the rest."""

    def __init__(self, config: VitPoseConfig):
        super().__init__()
        hidden = int(config.hidden_size * config.mlp_ratio)
        self.fc1 = nn.Linear(config.hidden_size, hidden)
        self.act = ACT2FN[config.hidden_act]
        shared_out = config.hidden_size - (config.part_features if config.num_experts > 1 else 0)
        self.fc2 = nn.Linear(hidden, shared_out)
        if config.num_experts > 1:
            self.experts = nn.ModuleList(nn.Linear(hidden, config.part_features) for _ in range(config.num_experts))
        else:
            self.experts = None

    def forward(self, hidden_states: torch.Tensor, expert_groups: list[tuple[int, torch.Tensor | None]]) -> torch.Tensor:
        hidden_states = self.act(self.fc1(hidden_states))
        shared = self.fc2(hidden_states)
        if self.experts is None:
            return shared
        if len(expert_groups) == 1:  # the common single-dataset batch: no gather/scatter
            return torch.cat([shared, self.experts[expert_groups[0][0]](hidden_states)], dim=-1)
        part = shared.new_empty(shared.shape[:-1] + (self.experts[0].out_features,))
        for expert, rows in expert_groups:
            part = part.index_copy(0, rows, self.experts[expert](hidden_states.index_select(0, rows)))
        return torch.cat([shared, part], dim=-1)


class VitPoseLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x)))."""

    def __init__(self, config: VitPoseConfig, drop_path_rate: float, attention_type: str = "full"):
        super().__init__()
        self.attention_type = attention_type
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = VitPoseAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = VitPoseMLP(config)
        self.drop_path = DropPath(drop_path_rate)

    def forward(
        self, hidden_states: torch.Tensor, expert_groups: list[tuple[int, torch.Tensor | None]],
        grid: tuple[int, int], output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attend(self.norm1(hidden_states), grid, output_attentions)
        hidden_states = hidden_states + self.drop_path(attended)
        hidden_states = hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states), expert_groups))
        return hidden_states, weights

    def attend(
        self, hidden_states: torch.Tensor, grid: tuple[int, int], output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.attention_type == "full":
            return self.attention(hidden_states, output_attentions=output_attentions)
        return window_self_attention(self.attention, hidden_states, grid, self.attention_type, output_attentions)


class VitPoseEncoder(nn.Module):
    """Embeddings, blocks and the last LayerNorm; returns a (B, C, rows, cols) feature map."""

    def __init__(self, config: VitPoseConfig):
        super().__init__()
        self.config = config
        self.embeddings = VitPoseEmbeddings(config)
        depth = config.num_hidden_layers
        rates = [config.drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        types = config.layer_attention_types
        self.layers = nn.ModuleList(VitPoseLayer(config, rates[i], types[i]) for i in range(depth))
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self, pixel_values: torch.Tensor, expert_groups: list[tuple[int, torch.Tensor | None]],
        output_hidden_states: bool = False, output_attentions: bool = False,
    ) -> VitPoseEncoderOutput:
        if pixel_values.shape[0] == 0:
            # No person in the batch: attention kernels reject empty batches, so one blank crop gives the shapes.
            blank = self(pixel_values.new_zeros((1, *pixel_values.shape[1:])), expert_groups, output_hidden_states,
                         output_attentions)
            return VitPoseEncoderOutput(**{k: _no_rows(v) for k, v in blank.items()})
        hidden_states, grid = self.embeddings(pixel_values)
        hidden_states, all_hidden, all_attentions = self.encode_tokens(
            hidden_states, expert_groups, grid, output_hidden_states, output_attentions
        )
        hidden_states = hidden_states[:, : grid[0] * grid[1]]  # knowledge tokens stop here
        feature_maps = hidden_states.transpose(1, 2).reshape(hidden_states.shape[0], hidden_states.shape[-1], *grid)
        return VitPoseEncoderOutput(feature_maps=feature_maps, hidden_states=all_hidden, attentions=all_attentions)

    def encode_tokens(
        self, hidden_states: torch.Tensor, expert_groups: list[tuple[int, torch.Tensor | None]],
        grid: tuple[int, int], output_hidden_states: bool = False, output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """The blocks and the last LayerNorm over embedded tokens (B, T, C): (normed tokens, hidden states, attentions).

        `forward` passes every token of the `grid`; MAE pre-training passes only the visible patches, which needs
        full attention in every layer (windows are cut from the whole `grid`).
        """
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, expert_groups, grid, output_attentions)
            if output_hidden_states:
                all_hidden.append(hidden_states)
            if output_attentions:
                all_attentions.append(weights)
        return (
            self.layernorm(hidden_states),
            tuple(all_hidden) if output_hidden_states else None,
            tuple(all_attentions) if output_attentions else None,
        )


class VitPoseDeconvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)
        self.batchnorm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.batchnorm(self.deconv(x)))


class VitPoseClassicHead(nn.Module):
    """Deconvolution blocks (x2 each) up to 1/4 resolution, then a 1x1 convolution to K heatmaps."""

    def __init__(self, config: VitPoseConfig, num_keypoints: int):
        super().__init__()
        num_blocks = int(math.log2(config.feature_stride // 4))
        channels = [config.hidden_size] + [config.decoder_channels] * num_blocks
        self.deconv_layers = nn.ModuleList(VitPoseDeconvBlock(channels[i], channels[i + 1]) for i in range(num_blocks))
        self.final_layer = nn.Conv2d(channels[-1], num_keypoints, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        for block in self.deconv_layers:
            features = block(features)
        return self.final_layer(features)


class VitPoseSimpleHead(nn.Module):
    """ReLU, bilinear upsampling to 1/4 resolution, then a 3x3 convolution to K heatmaps."""

    def __init__(self, config: VitPoseConfig, num_keypoints: int):
        super().__init__()
        self.scale_factor = config.feature_stride // 4
        self.final_layer = nn.Conv2d(config.hidden_size, num_keypoints, kernel_size=3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = F.relu(features)
        if self.scale_factor > 1:
            features = F.interpolate(features, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        return self.final_layer(features)


class VitPoseHeads(nn.Module):
    """The heatmap heads, one per keypoint dataset, under the names "0", "1", ... (weights `heads.0.*` as a ModuleList
    would have them), as one module with a forward: tools that wrap whole modules, such as PEFT's
    `modules_to_save=["heads"]`, can take it, which they refuse for a ModuleList."""

    def __init__(self, heads: list[nn.Module]):
        super().__init__()
        for index, head in enumerate(heads):
            self.add_module(str(index), head)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> nn.Module:
        position = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= position < len(self):
            raise IndexError(f"head index {index} is out of range for {len(self)} heads.")
        return self._modules[str(position)]

    def forward(self, features: torch.Tensor, groups: list[tuple[int, torch.Tensor | None]]) -> torch.Tensor:
        """Each group of rows through its dataset's head; heatmaps zero-padded to the largest K of the batch."""
        if len(self) == 1:
            return self[0](features)
        if len(groups) == 1:
            return self[groups[0][0]](features)
        max_k = max(self[head].final_layer.out_channels for head, _ in groups)
        out = None
        for head, rows in groups:
            maps = self[head](features.index_select(0, rows))
            if out is None:
                out = maps.new_zeros((features.shape[0], max_k) + maps.shape[2:])
            out = out.index_copy(0, rows, F.pad(maps, (0, 0, 0, 0, 0, max_k - maps.shape[1])))
        return out


# What a saved folder needs to load where this package is not installed (`trust_remote_code=True`).
PIPELINE_TASK = "keypoint-detection"
PIPELINE_CLASS = "pipeline.KeypointDetectionPipeline"
IMAGE_PROCESSOR_CLASS = "image_processing_vitpose.VitPoseImageProcessor"

HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def checkpoint_model_type(path_or_id: str | os.PathLike, **kwargs: Any) -> str | None:
    """The `model_type` in a checkpoint's config.json (None when there is no readable config)."""
    hub_kwargs = {k: v for k, v in kwargs.items() if k in HUB_KWARGS}
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(str(path_or_id), **hub_kwargs)
    except (OSError, ValueError):
        return None
    return config_dict.get("model_type")


def check_local_checkpoint(path_or_id: str | os.PathLike) -> None:
    """Fail clearly before transformers does: a missing local folder is not a Hub repo id, and a truncated or corrupt
    safetensors file is named (safetensors' own error names no file)."""
    path = os.fspath(path_or_id)
    looks_local = os.path.isabs(path) or path.startswith((".", "~")) or path.count("/") > 1 or path.endswith("/")
    if not os.path.exists(path):
        if looks_local:
            raise FileNotFoundError(f"Model folder {path!r} does not exist.")
        return
    if not os.path.isdir(path):
        raise NotADirectoryError(f"Model path {path!r} is a file; pass the folder holding config.json.")
    from safetensors import SafetensorError, safe_open

    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors"):
            try:
                with safe_open(os.path.join(path, name), framework="pt"):
                    pass
            except (SafetensorError, OSError) as error:
                raise OSError(f"Weights file {os.path.join(path, name)!r} is truncated or corrupt ({error}).") from None


@torch.no_grad()
def init_head_layer(layer: nn.Module) -> None:
    """The original head init: deconvolutions and the final conv drawn with std 0.001, bias 0."""
    layer._is_head_layer = True
    nn.init.normal_(layer.weight, std=0.001)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _head_key(key: str | tuple) -> bool:
    """Whether a loading-report entry (a name, or a (name, shapes...) tuple for mismatches) is a head weight."""
    return (key[0] if isinstance(key, tuple) else key).startswith("heads.")


class VitPosePreTrainedModel(PreTrainedModel):
    config_class = VitPoseConfig
    config: VitPoseConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["VitPoseEmbeddings", "VitPoseLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    # Loaders for checkpoints of other model types, by `model_type` (e.g. transformers' built-in "vitpose"):
    # fn(cls, path_or_id, strict=..., **kwargs) -> model. `import vitpose_hf` installs them, so that this file, which
    # `save_pretrained` copies as remote code, imports nothing outside the model bundle.
    foreign_checkpoint_loaders: dict[str, Callable[..., PreTrainedModel]] = {}
    # The Auto classes a saved folder maps to our model classes (`auto_map`), and whether it serves the pipeline.
    auto_classes: dict[str, str] = {}
    serves_pipeline: bool = False

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained`, plus what makes the folder load anywhere: `auto_map` for every Auto
        class that applies, `custom_pipelines` for the pipeline, and the code of all of them (the model bundle's
        files, which import nothing beyond torch, transformers, numpy and pillow). Every writer of the project
        (conversion, training, MAE, plain `save_pretrained`) goes through here."""
        if not kwargs.get("is_main_process", True):
            return super().save_pretrained(save_directory, *args, **kwargs)
        os.makedirs(save_directory, exist_ok=True)
        code_dir = Path(__file__).parent  # the installed package, or the remote-code copy this was loaded from
        pipeline_module, processor_module = PIPELINE_CLASS.split(".")[0], IMAGE_PROCESSOR_CLASS.split(".")[0]
        serves_pipeline = self.serves_pipeline and (code_dir / f"{pipeline_module}.py").is_file()
        for name in ("modeling_vitpose", processor_module) + ((pipeline_module,) if serves_pipeline else ()):
            path = code_dir / f"{name}.py"
            if path.is_file():  # a copy loaded as remote code may lack the processor file
                for needed in [str(path), *get_relative_import_files(str(path))]:
                    shutil.copyfile(needed, Path(save_directory) / Path(needed).name)
        auto_map = {"AutoConfig": f"configuration_vitpose.{type(self.config).__name__}"}
        auto_map.update({auto: f"modeling_vitpose.{name}" for auto, name in self.auto_classes.items()})
        if (code_dir / f"{processor_module}.py").is_file():
            auto_map["AutoImageProcessor"] = IMAGE_PROCESSOR_CLASS
        shared = {"auto_map": auto_map}
        if serves_pipeline:
            shared["custom_pipelines"] = {
                PIPELINE_TASK: {"impl": PIPELINE_CLASS, "pt": ["AutoModel"], "type": "image"}
            }
        # Written for this save only: an in-memory `custom_pipelines` would make `pipeline(task, model=self)` ask for
        # trust_remote_code where the package is installed.
        previous = {key: self.config.__dict__.get(key) for key in shared}
        try:
            for key, value in shared.items():
                setattr(self.config, key, value)
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            for key, value in previous.items():
                if value is None:
                    self.config.__dict__.pop(key, None)
                else:
                    setattr(self.config, key, value)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)) and not getattr(module, "_is_head_layer", False):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.num_batches_tracked.zero_()
        elif isinstance(module, VitPoseEmbeddings):
            nn.init.trunc_normal_(module.position_embeddings, std=std)
            if module.knowledge_tokens is not None:
                nn.init.trunc_normal_(module.knowledge_tokens, std=std)
        elif isinstance(module, (VitPoseClassicHead, VitPoseSimpleHead)):
            for layer in module.modules():
                if isinstance(layer, (nn.ConvTranspose2d, nn.Conv2d)):
                    init_head_layer(layer)

    # The head (and expert) of every sample while traced (torch.export, ONNX, torch.compile): a traced graph cannot
    # group a batch by the values of `dataset_index`. None: the only head of a single-head, expert-free model.
    traced_dataset_index: int | None = None

    def expert_groups(self, dataset_index: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
        """Group the batch by dataset: [(dataset, row indices)], a single (dataset, None) when uniform."""
        if torch.compiler.is_compiling():
            return [(self.traced_head_index(), None)]
        values = dataset_index.tolist()
        if len(set(values)) <= 1:  # uniform, or an empty batch (no person found)
            return [(values[0] if values else 0, None)]
        groups = []
        for value in sorted(set(values)):
            groups.append((value, (dataset_index == value).nonzero().flatten()))
        return groups

    def traced_head_index(self) -> int:
        """`traced_dataset_index` as a validated head (or, for a single head, expert) index."""
        index = self.traced_dataset_index
        if index is None:
            if len(self.config.keypoint_heads) > 1 or self.config.num_experts > 1:
                raise ValueError(
                    f"A traced model with heads {self.config.head_names} and {self.config.num_experts} experts serves "
                    "one dataset: set `model.traced_dataset_index` to its head (index or name) before tracing."
                )
            return 0
        if isinstance(index, str):
            return self.config.dataset_index(index)
        num_indices = self.config.num_experts if len(self.config.keypoint_heads) == 1 else len(self.config.keypoint_heads)
        if not 0 <= int(index) < num_indices:
            raise ValueError(
                f"traced_dataset_index {index} is out of range: this model has heads {self.config.head_names} and "
                f"{self.config.num_experts} experts."
            )
        return int(index)

    def resolve_dataset_index(self, dataset_index, batch_size: int, device: torch.device) -> torch.Tensor:
        """Accept an int, a dataset name, a sequence of either, or a (B,) tensor; validate against the heads."""
        num_heads = len(self.config.keypoint_heads)
        # A single head serves every expert (e.g. transformers' ViTPose+ checkpoints keep only the COCO head).
        num_indices = self.config.num_experts if num_heads == 1 else num_heads
        if dataset_index is None:
            return torch.zeros(batch_size, dtype=torch.long, device=device)
        if isinstance(dataset_index, str):
            dataset_index = self.config.dataset_index(dataset_index)
        if isinstance(dataset_index, (list, tuple)):
            dataset_index = [self.config.dataset_index(d) if isinstance(d, str) else d for d in dataset_index]
        dataset_index = torch.as_tensor(dataset_index, device=device)
        if dataset_index.is_floating_point() or dataset_index.dtype == torch.bool:
            raise TypeError(f"dataset_index must hold integers or head names, got {dataset_index.dtype} values.")
        dataset_index = dataset_index.long().reshape(-1)
        if dataset_index.numel() == 1 and batch_size != 1:
            dataset_index = dataset_index.expand(batch_size)
        if dataset_index.numel() != batch_size:
            raise ValueError(f"dataset_index has {dataset_index.numel()} entries for a batch of {batch_size}.")
        if torch.compiler.is_compiling():
            return dataset_index  # a data-dependent check cannot be traced; the traced head is fixed anyway
        bad = (dataset_index < 0) | (dataset_index >= num_indices)
        if bool(bad.any()):
            raise ValueError(
                f"dataset_index {dataset_index[bad][0].item()} is out of range: this model has {num_heads} heads "
                f"({self.config.head_names}) and {self.config.num_experts} experts."
            )
        return dataset_index

    def with_resolution(
        self, image_size: str | tuple[int, int] | None = None, patch_stride: int | None = None, strict: bool = True,
    ) -> "VitPosePreTrainedModel":
        """This model re-targeted to another input size and/or patch stride (paper Tables 3 and 4).

        The position embeddings are resampled bicubically to the new token grid; every other weight carries over.
        A classic decoder has one deconvolution per doubling from the feature map to the 1/4 heatmap, so changing the
        stride changes its blocks: with `strict` that is an error naming them, otherwise they start fresh. Returns
        `self` when nothing changes, else a new model.
        """
        config = copy.deepcopy(self.config)
        if image_size is not None:
            config.image_size = list(parse_image_size(image_size))
        if patch_stride is not None and int(patch_stride) != config.patch_stride:
            config.patch_stride, config.patch_padding = int(patch_stride), None  # the original's padding for it
        config.validate_vitpose()
        if (config.image_size, config.patch_stride) == (list(self.config.image_size), self.config.patch_stride):
            return self
        state = self.state_dict()
        key = "vit.embeddings.position_embeddings"
        state[key] = resize_position_embeddings(state[key], self.config.token_grid(), config.token_grid())
        reference = state[key]
        model = type(self)(config).to(device=reference.device, dtype=reference.dtype)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if strict and (missing or unexpected):
            changes = ([f"new weights {sorted(missing)}"] if missing else []) + (
                [f"dropped weights {sorted(unexpected)}"] if unexpected else []
            )
            raise ValueError(
                f"patch_stride {self.config.patch_stride} -> {config.patch_stride} changes the {config.decoder} decoder "
                f"({'; '.join(changes)}); pass strict=False to start it fresh, or load a VitPoseBackbone."
            )
        return model.train(self.training)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, strict: bool = True, **kwargs):
        """Load our checkpoints, or transformers' built-in "vitpose" ones (converted on the fly).

        With `strict` (default) any missing or unexpected weight is an error naming it, instead of the silent random
        initialisation `PreTrainedModel.from_pretrained` would fall back to. `image_size` (e.g. "384x288") and
        `patch_stride` may differ from the checkpoint's, also through a `config` (as `AutoModel` passes overrides):
        the checkpoint loads at its own geometry, then `with_resolution` re-targets it.
        """
        check_local_checkpoint(pretrained_model_name_or_path)
        geometry = {key: kwargs.pop(key) for key in ("image_size", "patch_stride") if key in kwargs}
        loader = cls.foreign_checkpoint_loaders.get(checkpoint_model_type(pretrained_model_name_or_path, **kwargs))
        if loader is not None:
            model = loader(cls, pretrained_model_name_or_path, strict=strict, **kwargs)
            return model.with_resolution(**geometry, strict=strict) if geometry else model
        config = kwargs.get("config")
        if isinstance(config, VitPoseConfig):
            stored = VitPoseConfig.from_pretrained(
                pretrained_model_name_or_path, **{k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
            )
            if (list(config.image_size), config.patch_stride) != (list(stored.image_size), stored.patch_stride):
                geometry = {"image_size": config.image_size, "patch_stride": config.patch_stride, **geometry}
                config = copy.deepcopy(config)
                config.image_size, config.patch_stride = list(stored.image_size), stored.patch_stride
                kwargs["config"] = config
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
        problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if kwargs.get("ignore_mismatched_sizes"):
            # The transformers idiom for another keypoint set (`keypoint_heads=[...]`): the heads may start fresh,
            # every other weight must still come from the checkpoint.
            restarted = {key[0] if isinstance(key, tuple) else key for k in ("missing_keys", "mismatched_keys")
                         for key in problems.get(k, []) if _head_key(key)}
            problems = {k: kept for k, v in problems.items() if (kept := [key for key in v if not _head_key(key)])}
            for layer_name in sorted({key.rsplit(".", 1)[0] for key in restarted}):
                layer = model.get_submodule(layer_name)
                if isinstance(layer, (nn.ConvTranspose2d, nn.Conv2d)):
                    init_head_layer(layer)  # as a new model's head starts, not transformers' generic re-init
        if strict and problems:
            raise ValueError(f"Checkpoint {pretrained_model_name_or_path} does not fit {cls.__name__}: {problems}")
        if geometry:
            model = model.with_resolution(**geometry, strict=strict)
        return (model, info) if output_loading_info else model

    def no_weight_decay_names(self) -> set[str]:
        """Parameters AdamW leaves undecayed besides the 1-D ones (timm's `no_weight_decay`): the position embeddings
        and knowledge tokens are embeddings, and decaying them pulls them towards zero."""
        names = {"vit.embeddings.position_embeddings"}
        if self.vit.embeddings.knowledge_tokens is not None:
            names.add("vit.embeddings.knowledge_tokens")
        return names

    def parameter_layer_ids(self) -> dict[str, int]:
        """Layer id of every parameter for layer-wise lr decay, as the original's `LayerDecayOptimizerConstructor`:
        embeddings 0, block i i + 1, the last LayerNorm and the heads `num_hidden_layers + 1`. Knowledge tokens are new
        weights rather than pre-trained ones, so they take the top id (the full learning rate)."""
        top = self.config.num_hidden_layers + 1
        ids = {name: top for name, _ in self.named_parameters()}
        ids.update({name: 0 for name, _ in self.vit.embeddings.named_parameters(prefix="vit.embeddings")})
        for i, layer in enumerate(self.vit.layers):
            ids.update({name: i + 1 for name, _ in layer.named_parameters(prefix=f"vit.layers.{i}")})
        if self.vit.embeddings.knowledge_tokens is not None:
            ids["vit.embeddings.knowledge_tokens"] = top
        return ids


def _no_rows(value: Any) -> Any:
    """A tensor (or tuple of tensors) with its batch rows dropped: the empty-batch output of a blank forward."""
    return tuple(v[:0] for v in value) if isinstance(value, tuple) else value[:0]


class VitPoseModel(VitPosePreTrainedModel):
    """The whole pose estimator: `VitPoseEncoder` and one heatmap head per keypoint dataset."""

    auto_classes = {
        "AutoModel": "VitPoseModel", "AutoModelForKeypointDetection": "VitPoseModel",
        "AutoModelForPoseEstimation": "VitPoseModel", "AutoBackbone": "VitPoseBackbone",
    }
    serves_pipeline = True

    def __init__(self, config: VitPoseConfig):
        super().__init__(config)
        self.vit = VitPoseEncoder(config)
        head_class = VitPoseClassicHead if config.decoder == "classic" else VitPoseSimpleHead
        self.heads = VitPoseHeads([head_class(config, layout.num_keypoints) for layout in config.layouts])
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        dataset_index: int | str | torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        target_weight: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VitPoseEstimatorOutput | tuple:
        """
        Args:
            pixel_values: (B, 3, H, W) normalised crops, usually from `VitPoseImageProcessor`.
            dataset_index: which head (and ViTPose+ expert) each sample uses: an int or dataset name for the whole
                batch, or a (B,) tensor. Defaults to the first head.
            labels: (B, K, H/4, W/4) target heatmaps; K is the largest K among the batch's heads.
            target_weight: (B, K) per-joint weights (0 for unlabeled joints and padding channels).
        """
        output_hidden_states = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        dataset_index = self.resolve_dataset_index(dataset_index, pixel_values.shape[0], pixel_values.device)
        groups = self.expert_groups(dataset_index)
        encoded = self.vit(pixel_values, groups, output_hidden_states, output_attentions)
        heatmaps = self.decode_heads(encoded.feature_maps, groups)

        loss = None
        if labels is not None:
            loss = self.compute_loss(heatmaps, labels, target_weight, dataset_index)
        output = VitPoseEstimatorOutput(
            loss=loss, heatmaps=heatmaps, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )
        return output if return_dict else output.to_tuple()

    def decode_heads(self, features: torch.Tensor, groups: list[tuple[int, torch.Tensor | None]]) -> torch.Tensor:
        return self.heads(features, groups)

    def num_keypoints_per_sample(self, dataset_index: torch.Tensor) -> torch.Tensor:
        counts = torch.tensor([layout.num_keypoints for layout in self.config.layouts], device=dataset_index.device)
        return counts[dataset_index] if len(counts) > 1 else counts.expand(dataset_index.shape[0])

    def compute_loss(
        self, heatmaps: torch.Tensor, labels: torch.Tensor, target_weight: torch.Tensor | None,
        dataset_index: torch.Tensor,
    ) -> torch.Tensor:
        if labels.shape != heatmaps.shape:
            raise ValueError(
                f"labels must have the heatmaps' shape {tuple(heatmaps.shape)} (batch, keypoints, height, width), "
                f"got {tuple(labels.shape)}."
            )
        if target_weight is not None and tuple(target_weight.shape[:2]) != tuple(heatmaps.shape[:2]):
            raise ValueError(
                f"target_weight must be (batch, keypoints) = {tuple(heatmaps.shape[:2])}, got {tuple(target_weight.shape)}."
            )
        if target_weight is not None:
            target_weight = target_weight.reshape(heatmaps.shape[:2])
        if heatmaps.shape[0] == 0:
            return heatmaps.sum()  # nobody to learn from: zero, not the NaN of an empty mean
        counts = self.num_keypoints_per_sample(dataset_index)
        uniform = bool((counts == heatmaps.shape[1]).all())
        return joints_mse_loss(heatmaps, labels, target_weight, None if uniform else counts)


class VitPoseBackbone(BackboneMixin, VitPosePreTrainedModel):
    """The bare ViTPose encoder as a transformers backbone: spatial feature maps of the chosen blocks."""

    _keys_to_ignore_on_load_unexpected = [r"^heads\."]  # a whole estimator's checkpoint loads as a backbone
    # AutoModel stays the estimator's: transformers maps one config class to one model class per Auto class.
    auto_classes = {"AutoBackbone": "VitPoseBackbone"}

    def __init__(self, config: VitPoseConfig):
        super().__init__(config)
        self.vit = VitPoseEncoder(config)
        self.num_features = [config.hidden_size] * (config.num_hidden_layers + 1)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        dataset_index: int | str | torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BackboneOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        dataset_index = self.resolve_dataset_index(dataset_index, pixel_values.shape[0], pixel_values.device)
        encoded = self.vit(pixel_values, self.expert_groups(dataset_index), True, output_attentions)
        rows, cols = encoded.feature_maps.shape[-2:]
        feature_maps = []
        for stage, hidden in zip(self.stage_names, encoded.hidden_states):
            if stage not in self.out_features:
                continue
            if stage == self.stage_names[-1]:
                feature_maps.append(encoded.feature_maps)  # the last stage gets the final LayerNorm
            else:
                tokens = hidden[:, : rows * cols]
                feature_maps.append(tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], rows, cols))
        output = BackboneOutput(
            feature_maps=tuple(feature_maps),
            hidden_states=encoded.hidden_states if output_hidden_states else None,
            attentions=encoded.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = ["VitPoseModel", "VitPoseBackbone", "VitPosePreTrainedModel", "VitPoseEstimatorOutput", "joints_mse_loss"]
