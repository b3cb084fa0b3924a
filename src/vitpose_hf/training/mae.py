"""MAE pre-training of the ViTPose backbone on person crops (paper section 3.3, Table 2), behind
`scripts/pretrain_mae.py`.

The paper pre-trains ViTPose-B with MAE on person crops of COCO + AI Challenger only (1,600 epochs, 75% masking) and
matches ImageNet-1K pre-training. Here:

- crops come from any COCO-format keypoint dataset through `vitpose_hf.data` (the pose box crop at the model's input
  size; by default flip and a light scale jitter, no rotation or half-body);
- each sample hides exactly `round(mask_ratio * N)` of its N patches (`random_masking`); the `VitPoseBackbone`
  encodes only the visible ones (`VitPoseEncoder.encode_tokens`);
- the decoder is transformers' `ViTMAEDecoder` (its blocks, mask token, sin-cos position embeddings and prediction
  layer), only re-laid out for the non-square token grids of pose crops (`VitPoseMAEDecoder`); its class-token slot
  gets the mean of the visible latents, since ViTPose has no class token;
- the loss is the mean squared error of per-patch normalised pixels over the masked patches only
  (`masked_patch_loss`); the target patch of each token is exactly the pixels its patch embedding sees
  (`patchify`, which follows ViTPose's 2-pixel patch padding);
- the result is a plain `VitPoseBackbone` folder (`final/`): `model.init_from: <it>` in a `scripts/train.py` recipe
  starts a `VitPoseModel` from it; the decoder is dropped.

Checkpoints, resume, NaN stop, the data order and the config checks are the training script's own (the run loop of
`vitpose_hf.training.loop`, fed by `MAETask`, and `.config`), so a resumed pre-training ends with the same weights as
an uninterrupted one. The masks of a batch are a function of (seed, epoch, batch, process).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm
from transformers import ViTMAEConfig
from transformers.models.vit_mae.modeling_vit_mae import (
    ViTMAEDecoder,
    build_2d_sinusoidal_position_embedding,
)
from transformers.utils import ModelOutput

from ..configuration_vitpose import VitPoseConfig
from ..data.coco import load_keypoint_dataset
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, TopDownAugmentation
from ..evaluation.distributed import gather_in_order, is_main_process, num_processes, process_share
from ..image_processing_vitpose import VitPoseImageProcessor
from ..modeling_vitpose import VitPoseBackbone
from .cards import render_run_card
from .config import (
    ConfigError,
    RunSection,
    check_betas,
    check_config_overrides,
    load_config,
)
from .data import RunData, dataset_layout
from .initialization import initialize_model
from .loop import BatchPosition, RunTask, run
from .optim import layer_decay_parameter_groups

logger = logging.getLogger(__name__)

# Person crops for MAE: the pose crop with flip and a light scale jitter; no rotation, no half-body.
MAE_AUGMENTATION: dict[str, Any] = {"rotation_prob": 0.0, "half_body_prob": 0.0, "scale_factor": 0.25}


# Configuration ----------------------------------------------------------------------------------------------------
@dataclass
class MAEModelSection:
    """Args:
        variant: a `VitPoseConfig.from_variant` name; the backbone to pre-train.
        config_overrides: `VitPoseConfig` fields on top of the variant (sizes, image_size, drop_path_rate).
        init_from: continue from these backbone weights (anything `initialize_model` reads) instead of MAE's
            initialisation.
    """

    variant: str = "vitpose-base"
    config_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None


@dataclass
class MAESection:
    """MAE's settings; the defaults are the paper's (ViTMAEConfig's decoder, normalised-pixel loss).

    fixed_position_embeddings: start the encoder's position embeddings as 2-D sin-cos and keep them fixed during
        pre-training, as MAE does (they are learned again when the pose model is fine-tuned).
    """

    mask_ratio: float = 0.75
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    norm_pix_loss: bool = True
    fixed_position_embeddings: bool = True


@dataclass
class MAEOptimizationSection:
    """AdamW with linear warmup then cosine decay to `min_learning_rate` (MAE's recipe).

    MAE's learning rate is `1.5e-4 * global_batch / 256`: 2.4e-3 at its batch of 4096.
    """

    learning_rate: float = 2.4e-3
    min_learning_rate: float = 0.0
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    max_grad_norm: float | None = None
    warmup: float = 40
    warmup_unit: str = "epochs"


@dataclass
class MAEPretrainingConfig(RunSection):
    """A whole MAE pre-training run. The run keys mean what they mean in `TrainingConfig`; `datasets` are the
    training script's dataset sections (their validation split, when given, provides the evaluation crops);
    `eval_samples` crops are reconstructed at each evaluation, the first `num_reconstruction_images` of them drawn."""

    output_dir: str = "outputs/mae"
    num_epochs: int | None = 1600
    augmentation: dict[str, Any] = field(default_factory=lambda: dict(MAE_AUGMENTATION))
    eval_samples: int = 64
    num_reconstruction_images: int = 8
    model: MAEModelSection = field(default_factory=MAEModelSection)
    mae: MAESection = field(default_factory=MAESection)
    optimization: MAEOptimizationSection = field(default_factory=MAEOptimizationSection)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        self.validate_run()
        check_config_overrides(self.model.config_overrides)
        check_backbone_for_mae(backbone_config_from(self))
        mae = self.mae
        if not 0.0 < float(mae.mask_ratio) < 1.0:
            raise ConfigError(f"mae.mask_ratio must lie strictly between 0 and 1, got {mae.mask_ratio}.")
        for key in ("decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads",
                    "decoder_intermediate_size"):
            if int(getattr(mae, key)) < 1:
                raise ConfigError(f"mae.{key} must be >= 1, got {getattr(mae, key)}.")
        if mae.decoder_hidden_size % mae.decoder_num_attention_heads:
            raise ConfigError(f"mae.decoder_hidden_size ({mae.decoder_hidden_size}) must be divisible by "
                              f"mae.decoder_num_attention_heads ({mae.decoder_num_attention_heads}).")
        if mae.decoder_hidden_size % 4:
            raise ConfigError(f"mae.decoder_hidden_size must be a multiple of 4 (2-D sin-cos), got {mae.decoder_hidden_size}.")
        opt = self.optimization
        if opt.warmup_unit not in ("epochs", "steps"):
            raise ConfigError(f"optimization.warmup_unit must be epochs or steps, got {opt.warmup_unit!r}.")
        if not opt.learning_rate > 0:
            raise ConfigError(f"optimization.learning_rate must be > 0, got {opt.learning_rate}.")
        for key in ("min_learning_rate", "warmup", "weight_decay"):
            if getattr(opt, key) < 0:
                raise ConfigError(f"optimization.{key} must be >= 0, got {getattr(opt, key)}.")
        if opt.max_grad_norm is not None and not opt.max_grad_norm > 0:
            raise ConfigError(f"optimization.max_grad_norm must be > 0 (or null), got {opt.max_grad_norm}.")
        check_betas(opt.betas)
        if self.eval_samples < 1 or self.num_reconstruction_images < 0:
            raise ConfigError("eval_samples must be >= 1 and num_reconstruction_images >= 0.")


def load_mae_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, dotted: list[str] | None = None
) -> MAEPretrainingConfig:
    """An MAE pre-training run from YAML (see `vitpose_hf.training.config.load_config`: unknown keys are errors)."""
    return load_config(MAEPretrainingConfig, path, overrides, dotted)


# Masking, patches and the loss --------------------------------------------------------------------------------------
def num_masked_patches(num_patches: int, mask_ratio: float) -> int:
    """How many of `num_patches` patches each sample hides: `round(mask_ratio * num_patches)`, at least one of each."""
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie strictly between 0 and 1, got {mask_ratio}.")
    masked = int(round(mask_ratio * num_patches))
    if not 0 < masked < num_patches:
        raise ValueError(
            f"mask_ratio {mask_ratio} of {num_patches} patches leaves {num_patches - masked} visible and {masked} "
            "masked; both must be at least one."
        )
    return masked


def random_masking(noise: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-sample shuffle: the patches with the lowest noise stay visible.

    Args:
        noise: (B, N) values, one per patch (uniform draws in training).

    Returns:
        ids_keep (B, N - M) visible patch indices in shuffle order, mask (B, N) with 1 for the M = `num_masked_patches`
        hidden ones, ids_restore (B, N) the inverse permutation (what `ViTMAEDecoder` takes).
    """
    batch, num_patches = noise.shape
    num_visible = num_patches - num_masked_patches(num_patches, mask_ratio)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = (ids_restore >= num_visible).to(noise.dtype if noise.is_floating_point() else torch.float32)
    return ids_shuffle[:, :num_visible], mask, ids_restore


def patchify(pixel_values: torch.Tensor, patch_size: int, padding: int = 0) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch_size**2 * C): each token's patch as the patch embedding sees it (zero padding
    included), flattened (row, column, channel) like transformers' `ViTMAEForPreTraining.patchify`."""
    batch, channels = pixel_values.shape[:2]
    columns = F.unfold(pixel_values, kernel_size=patch_size, stride=patch_size, padding=padding)  # (B, C*p*p, N)
    columns = columns.reshape(batch, channels, patch_size, patch_size, -1)
    return columns.permute(0, 4, 2, 3, 1).reshape(batch, -1, patch_size * patch_size * channels)


def unpatchify(patches: torch.Tensor, image_size: tuple[int, int], patch_size: int, padding: int = 0) -> torch.Tensor:
    """The inverse of `patchify`: (B, N, p*p*C) -> (B, C, H, W); pixels no patch covers are 0."""
    batch, num_patches = patches.shape[:2]
    channels = patches.shape[-1] // (patch_size * patch_size)
    columns = patches.reshape(batch, num_patches, patch_size, patch_size, channels).permute(0, 4, 2, 3, 1)
    columns = columns.reshape(batch, channels * patch_size * patch_size, num_patches)
    return F.fold(columns, tuple(image_size), kernel_size=patch_size, stride=patch_size, padding=padding)


def patch_statistics(patches: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch mean and `sqrt(var + eps)` (unbiased variance, as MAE), the normalisation of its pixel targets."""
    return patches.mean(dim=-1, keepdim=True), (patches.var(dim=-1, keepdim=True) + eps).sqrt()


def masked_patch_loss(
    predictions: torch.Tensor, target_patches: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Mean over masked patches of the per-patch mean squared error; visible patches do not count.

    Args:
        predictions, target_patches: (B, N, D); with `norm_pix_loss` each target patch is first normalised by its own
            mean and standard deviation (`patch_statistics`).
        mask: (B, N), 1 where the patch was hidden.
    """
    target = target_patches.float()
    if norm_pix_loss:
        mean, std = patch_statistics(target, eps)
        target = (target - mean) / std
    per_patch = (predictions.float() - target).pow(2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum()


# The model ----------------------------------------------------------------------------------------------------------
class VitPoseMAEDecoder(ViTMAEDecoder):
    """transformers' `ViTMAEDecoder` on a rows x cols token grid (it lays its sin-cos embeddings out on a square one).

    Slot 0 of its input is the class token's; `VitPoseMaskedAutoencoder` puts the mean visible latent there.
    """

    def __init__(self, config: ViTMAEConfig, grid: tuple[int, int]):
        self.grid = (int(grid[0]), int(grid[1]))
        super().__init__(config, num_patches=self.grid[0] * self.grid[1])
        mae_initialization_(self)

    @torch.no_grad()
    def initialize_weights(self, num_patches: int) -> None:
        rows, cols = self.grid
        position = build_2d_sinusoidal_position_embedding(rows, cols, self.decoder_pos_embed.shape[-1], cls_token=True)
        self.decoder_pos_embed.copy_(position.unsqueeze(0))
        nn.init.normal_(self.mask_token, std=self.config.initializer_range)


def mae_decoder_config(backbone_config: VitPoseConfig, mae: MAESection) -> ViTMAEConfig:
    """The `ViTMAEConfig` that `ViTMAEDecoder` reads: the encoder's width and patch, the decoder's own sizes."""
    return ViTMAEConfig(
        hidden_size=backbone_config.hidden_size, patch_size=backbone_config.patch_size,
        num_channels=backbone_config.num_channels, image_size=list(backbone_config.image_size),
        decoder_hidden_size=mae.decoder_hidden_size, decoder_num_hidden_layers=mae.decoder_num_hidden_layers,
        decoder_num_attention_heads=mae.decoder_num_attention_heads,
        decoder_intermediate_size=mae.decoder_intermediate_size, mask_ratio=mae.mask_ratio,
        norm_pix_loss=mae.norm_pix_loss, layer_norm_eps=1e-6, hidden_act="gelu", attn_implementation="sdpa",
    )


@torch.no_grad()
def mae_initialization_(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linear layers and patch projection (as a linear map), zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(layer.weight.view(layer.weight.shape[0], -1))
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def check_backbone_for_mae(config: VitPoseConfig) -> None:
    """MAE drops tokens, so it needs a plain ViT: full attention, one patch per token, no experts or extra tokens."""
    problems = []
    if config.patch_stride != config.patch_size:
        problems.append(f"patch_stride {config.patch_stride} != patch_size {config.patch_size} (overlapping patches "
                        "leak masked pixels; pre-train at stride patch_size, fine-tune at any stride)")
    if any(kind != "full" for kind in config.layer_attention_types):
        problems.append(f"attention_type {config.attention_type!r} (window attention needs every token)")
    if config.num_experts > 1:
        problems.append(f"num_experts {config.num_experts} (pre-train the shared backbone)")
    if config.num_knowledge_tokens:
        problems.append(f"num_knowledge_tokens {config.num_knowledge_tokens}")
    if config.hidden_size % 4:
        problems.append(f"hidden_size {config.hidden_size} is not a multiple of 4 (2-D sin-cos position embeddings)")
    if problems:
        raise ConfigError("MAE pre-training needs a plain ViT backbone: " + "; ".join(problems) + ".")


@dataclass
class VitPoseMAEOutput(ModelOutput):
    """
    Args:
        loss: `masked_patch_loss` of the batch.
        logits: (B, N, patch_size**2 * C) predicted patches (normalised per patch with `norm_pix_loss`).
        mask: (B, N), 1 for the hidden patches.
        ids_restore: (B, N), the inverse of the shuffle that chose the visible patches.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.Tensor | None = None


class VitPoseMaskedAutoencoder(nn.Module):
    """A `VitPoseBackbone` that encodes the visible patches, and `VitPoseMAEDecoder` that predicts the hidden ones."""

    def __init__(self, backbone: VitPoseBackbone, mae: MAESection | None = None):
        super().__init__()
        mae = mae or MAESection()
        check_backbone_for_mae(backbone.config)
        self.backbone = backbone
        self.mask_ratio = float(mae.mask_ratio)
        self.norm_pix_loss = bool(mae.norm_pix_loss)
        self.grid = backbone.config.token_grid()
        num_masked_patches(self.grid[0] * self.grid[1], self.mask_ratio)  # fails early when nothing would be masked
        self.decoder = VitPoseMAEDecoder(mae_decoder_config(backbone.config, mae), self.grid)

    @property
    def config(self) -> VitPoseConfig:
        return self.backbone.config

    @torch.no_grad()
    def initialize_encoder(self, fixed_position_embeddings: bool = True) -> None:
        """MAE's start for the encoder: `mae_initialization_` and 2-D sin-cos position embeddings (kept fixed)."""
        mae_initialization_(self.backbone.vit)
        embeddings = self.backbone.vit.embeddings
        rows, cols = self.grid
        sincos = build_2d_sinusoidal_position_embedding(rows, cols, self.config.hidden_size)
        embeddings.position_embeddings.copy_(sincos.unsqueeze(0).to(embeddings.position_embeddings.dtype))
        embeddings.position_embeddings.requires_grad_(not fixed_position_embeddings)

    def parameter_layer_ids(self) -> dict[str, int]:
        """The backbone's layer ids (`VitPosePreTrainedModel.parameter_layer_ids`); the decoder sits on top."""
        top = self.config.num_hidden_layers + 1
        ids = {name: top for name, _ in self.named_parameters()}
        ids.update({f"backbone.{name}": i for name, i in self.backbone.parameter_layer_ids().items()})
        return ids

    def no_weight_decay_names(self) -> set[str]:
        return {f"backbone.{name}" for name in self.backbone.no_weight_decay_names()}

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return patchify(pixel_values, self.config.patch_size, self.config.patch_embedding_padding)

    def unpatchify(self, patches: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        return unpatchify(patches, image_size, self.config.patch_size, self.config.patch_embedding_padding)

    def encode_visible(self, pixel_values: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """(B, K, C) encoder outputs (final LayerNorm included) of the patches `ids_keep`; the rest are never seen."""
        embeddings, grid = self.backbone.vit.embeddings(pixel_values)
        index = ids_keep.unsqueeze(-1).expand(-1, -1, embeddings.shape[-1])
        latent, _, _ = self.backbone.vit.encode_tokens(embeddings.gather(1, index), [(0, None)], grid)
        return latent

    def forward(self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None) -> VitPoseMAEOutput:
        """
        Args:
            pixel_values: (B, 3, H, W) normalised crops at the backbone's `image_size`.
            noise: (B, N) masking noise (`random_masking`); uniform draws from the global generator when None.
        """
        num_patches = self.grid[0] * self.grid[1]
        if tuple(pixel_values.shape[-2:]) != tuple(self.config.image_size):
            raise ValueError(f"pixel_values must be {tuple(self.config.image_size)} crops, got {tuple(pixel_values.shape)}.")
        if noise is None:
            noise = torch.rand(pixel_values.shape[0], num_patches, device=pixel_values.device)
        if tuple(noise.shape) != (pixel_values.shape[0], num_patches):
            raise ValueError(f"noise must be (batch, {num_patches}), got {tuple(noise.shape)}.")
        ids_keep, mask, ids_restore = random_masking(noise.to(pixel_values.device), self.mask_ratio)
        latent = self.encode_visible(pixel_values, ids_keep)
        summary = latent.mean(dim=1, keepdim=True)  # the decoder's class-token slot
        logits = self.decoder(torch.cat([summary, latent], dim=1), ids_restore).logits
        loss = masked_patch_loss(logits, self.patchify(pixel_values), mask, self.norm_pix_loss)
        return VitPoseMAEOutput(loss=loss, logits=logits, mask=mask, ids_restore=ids_restore)


def build_mae_model(config: MAEPretrainingConfig) -> VitPoseMaskedAutoencoder:
    """The backbone of `config.model` (MAE-initialised, or from `init_from`) with a fresh decoder."""
    backbone_config = backbone_config_from(config)
    check_backbone_for_mae(backbone_config)
    backbone = VitPoseBackbone(backbone_config)
    model = VitPoseMaskedAutoencoder(backbone, config.mae)
    if config.model.init_from is None:
        model.initialize_encoder(config.mae.fixed_position_embeddings)
    else:
        source, report = initialize_model(backbone_config, config.model.init_from, backbone_only=True)
        backbone.vit.load_state_dict(source.vit.state_dict())
        backbone.vit.embeddings.position_embeddings.requires_grad_(not config.mae.fixed_position_embeddings)
        logger.info("%s", report)
    return model


def backbone_config_from(config: MAEPretrainingConfig) -> VitPoseConfig:
    return VitPoseConfig.from_variant(config.model.variant, **config.model.config_overrides)


# The schedule -------------------------------------------------------------------------------------------------------
def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """lr factor of optimizer step `step`: linear warmup to 1 over `warmup_steps`, then half a cosine to `min_ratio`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_mae_optimizer(
    model: VitPoseMaskedAutoencoder, opt: MAEOptimizationSection, total_steps: int, steps_per_epoch: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW without decay on biases, norms and position embeddings (the training recipe's groups, no layer decay)."""
    groups = layer_decay_parameter_groups(model, opt.learning_rate, opt.weight_decay, 1.0)
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups],
                                  lr=opt.learning_rate, betas=tuple(opt.betas))
    warmup = int(round(opt.warmup * (steps_per_epoch if opt.warmup_unit == "epochs" else 1)))
    min_ratio = opt.min_learning_rate / opt.learning_rate
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, total_steps, min_ratio))
    return optimizer, scheduler


# Data ---------------------------------------------------------------------------------------------------------------
def masking_noise(shape: tuple[int, int], seed: int, epoch: int, batch: int, process: int) -> torch.Tensor:
    """Uniform noise for `random_masking`, fixed by (seed, epoch, batch in epoch, process): resume-exact masks."""
    state = np.random.SeedSequence([seed, epoch, batch, process]).generate_state(2)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.rand(shape, generator=generator)


def evaluation_crops(config: MAEPretrainingConfig, backbone_config: VitPoseConfig) -> torch.Tensor:
    """The first `eval_samples` plain box crops (no augmentation) of the validation splits, or of the training sets
    where no dataset has one."""
    height, width = backbone_config.image_size
    sections = [d for d in config.datasets if d.val_annotation_file] or config.datasets
    crops: list[torch.Tensor] = []
    for index, section in enumerate(sections):
        annotation_file = section.val_annotation_file or section.annotation_file
        image_root = section.val_image_root or section.image_root
        transform = TopDownAugmentation(dataset_layout(section), input_size=(height, width), train=False)
        dataset = load_keypoint_dataset(annotation_file, image_root, dataset_layout(section),
                                        section.format if not section.val_annotation_file else "coco",
                                        dataset_index=index, transform=transform)
        for i in range(min(len(dataset), config.eval_samples - len(crops))):
            crops.append(dataset[i]["pixel_values"])
        if len(crops) >= config.eval_samples:
            break
    if not crops:
        raise ValueError("No person crop to evaluate the reconstructions on: every dataset is empty.")
    return torch.stack(crops)


@torch.no_grad()
def reconstruction_picture(
    model: VitPoseMaskedAutoencoder, pixel_values: torch.Tensor, output: VitPoseMAEOutput,
    image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
) -> Image.Image:
    """One row per crop: the crop | its visible patches (hidden ones grey) | the reconstruction (predicted hidden
    patches, with normalised-pixel predictions mapped back through each true patch's mean and std, as MAE shows
    them, pasted between the visible ones)."""
    pixel_values = pixel_values.float().cpu()
    size = tuple(pixel_values.shape[-2:])
    logits, mask = output.logits.float().cpu(), output.mask.float().cpu()
    patches = model.patchify(pixel_values)
    if model.norm_pix_loss:
        mean, std = patch_statistics(patches)
        logits = logits * std + mean
    p = model.config.patch_size
    hidden = model.unpatchify(mask[..., None].expand(-1, -1, patches.shape[-1]), size)  # 1 on hidden pixels
    predicted = model.unpatchify(logits, size)
    masked = pixel_values * (1 - hidden)  # grey (the normalised mean) where hidden
    reconstructed = pixel_values * (1 - hidden) + predicted * hidden
    mean = torch.tensor(image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_std).view(1, 3, 1, 1)
    gap = max(2, p // 4)
    rows = []
    for crop in (pixel_values, masked, reconstructed):
        rgb = ((crop * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        rows.append(rgb)
    height, width = size
    canvas = np.full((len(pixel_values) * (height + gap) - gap, 3 * (width + gap) - gap, 3), 255, dtype=np.uint8)
    for i in range(len(pixel_values)):
        for j, column in enumerate(rows):
            canvas[i * (height + gap):i * (height + gap) + height, j * (width + gap):j * (width + gap) + width] = column[i]
    return Image.fromarray(canvas)


@torch.no_grad()
def evaluate_reconstruction(
    model: VitPoseMaskedAutoencoder, crops: torch.Tensor, seed: int, batch_size: int, device: torch.device,
    num_pictures: int = 0, show_progress: bool = False, process_state: Any = None,
) -> tuple[float, Image.Image | None]:
    """Mean masked-patch loss over `crops` with masks fixed by `seed` (comparable across steps), and the picture of
    the first `num_pictures` crops (on the main process; None elsewhere).

    With `process_state` (call it on all its processes with the same crops) each process takes a contiguous share of
    the crops and the (loss sum, count) pairs are gathered: every crop keeps its mask, every crop's loss is the mean
    over its own masked patches, so the mean is that of one process."""
    num_patches = model.grid[0] * model.grid[1]
    noise = torch.rand((len(crops), num_patches), generator=torch.Generator().manual_seed(seed))
    share = process_share(len(crops), process_state)
    total, count, picture = 0.0, 0, None
    for start in tqdm(range(share.start, share.stop, batch_size), desc="Evaluating", leave=False,
                      disable=not (show_progress and is_main_process(process_state))):
        stop = min(start + batch_size, share.stop)
        batch = crops[start:stop].to(device)
        output = model(batch, noise[start:stop].to(device))
        total += float(output.loss) * len(batch)
        count += len(batch)
        if start == 0 and num_pictures:
            shown = min(num_pictures, len(batch))
            shown_output = VitPoseMAEOutput(logits=output.logits[:shown], mask=output.mask[:shown])
            picture = reconstruction_picture(model, batch[:shown], shown_output)
    world = num_processes(process_state)
    rank = int(process_state.process_index) if world > 1 else 0
    parts = gather_in_order([rank], [(total, count)], world, process_state)
    return sum(t for t, _ in parts) / sum(c for _, c in parts), picture


# The run ------------------------------------------------------------------------------------------------------------
class MAETask(RunTask):
    """MAE pre-training for the run loop: masked-patch loss with resume-exact masks, held-out loss and the
    reconstruction picture as evaluation, the encoder alone as the final model."""

    name = "mae"
    config_file = "mae_config.yaml"
    config: MAEPretrainingConfig

    def __init__(self, config: MAEPretrainingConfig):
        super().__init__(config)
        self.backbone_config = backbone_config_from(config)
        check_backbone_for_mae(self.backbone_config)
        self.eval_crops: torch.Tensor | None = None
        self.num_patches = 0

    def model_config(self) -> VitPoseConfig:
        return self.backbone_config

    def build(self, accelerator, data: RunData):
        self.eval_crops = evaluation_crops(self.config, self.backbone_config)  # on every process: each takes a share
        model = build_mae_model(self.config)
        self.num_patches = model.grid[0] * model.grid[1]
        optimizer, scheduler = build_mae_optimizer(model, self.config.optimization, data.max_steps, data.steps_per_epoch)
        return model, optimizer, scheduler

    def loss_terms(self, model, batch: dict[str, Any], position: BatchPosition) -> dict[str, torch.Tensor]:
        pixel_values = batch["pixel_values"]
        noise = masking_noise((len(pixel_values), self.num_patches), self.config.seed, position.epoch, position.index,
                              position.process)
        return {"loss": model(pixel_values, noise.to(pixel_values.device)).loss}

    def evaluates(self) -> bool:
        return True  # on held-out crops, or training crops where no dataset has a validation split

    def evaluate(self, model, accelerator, step: int) -> dict[str, Any]:
        """Held-out masked loss; the reconstruction picture goes to OUTPUT/reconstructions/step-*.png."""
        loss, picture = evaluate_reconstruction(model, self.eval_crops, self.config.seed,
                                                self.config.per_device_batch_size, accelerator.device,
                                                self.config.num_reconstruction_images,
                                                show_progress=accelerator.is_local_main_process,
                                                process_state=accelerator)
        if picture is not None and accelerator.is_main_process:
            folder = Path(self.config.output_dir) / "reconstructions"
            folder.mkdir(parents=True, exist_ok=True)
            picture.save(folder / f"step-{step:07d}.png")
        return {"eval_loss": loss}

    def save_final(self, model: VitPoseMaskedAutoencoder, folder: Path, results: dict, command: str) -> None:
        """The encoder alone as a `VitPoseBackbone` folder (with its image processor and card): what `model.init_from`
        of a training recipe takes. The decoder is dropped."""
        backbone = model.backbone
        backbone.save_pretrained(folder)
        VitPoseImageProcessor.from_model_config(backbone.config).save_pretrained(folder)
        (folder / "README.md").write_text(render_run_card(backbone.config, self.config, results, command,
                                                          self.config_file, mask_ratio=self.config.mae.mask_ratio))

    def tracker_config(self) -> dict[str, Any]:
        return {**super().tracker_config(), "mask_ratio": self.config.mae.mask_ratio}

    def describe(self, data: RunData, accelerator) -> str:
        masked = num_masked_patches(self.num_patches, self.config.mae.mask_ratio)
        return f"{super().describe(data, accelerator)}; {self.num_patches} patches per crop, {masked} masked"


def pretrain(config: MAEPretrainingConfig, resume_from_checkpoint: str | None = None, command: str | None = None,
             overwrite_output_dir: bool = False) -> dict:
    """Run the MAE pre-training of `config`; returns the last evaluation ({"eval_loss": ...})."""
    return run(MAETask(config), resume_from_checkpoint, command, overwrite_output_dir)


__all__ = [
    "MAEPretrainingConfig",
    "MAESection",
    "VitPoseMAEDecoder",
    "VitPoseMaskedAutoencoder",
    "load_mae_config",
    "masked_patch_loss",
    "num_masked_patches",
    "patchify",
    "pretrain",
    "random_masking",
    "unpatchify",
]
