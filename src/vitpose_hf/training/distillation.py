"""Knowledge distillation from a large ViTPose to a small one (paper section 3.4, Table 7).

A training config turns it on with a `distillation:` mapping; three stages share one loop (`scripts/train.py`):

    stage: output    the model trained is the student; loss = GT loss + output_weight * MSE(student, teacher)  (eq. 4)
    stage: token     the model trained is the teacher itself with `num_tokens` fresh knowledge tokens appended after
                     its patch embedding; everything but the tokens is frozen and the loss is the GT loss  (eq. 5)
    stage: student   the student gets the tokens learned in stage `token` (`token_from`: that run's `final/` folder),
                     frozen; with a teacher it also gets the output loss (eq. 6, L_td or L_tod)

Keys (unknown keys are errors naming them):

    teacher                   a checkpoint `VitPoseModel.from_pretrained` loads (ours, transformers' built-in
                              "vitpose"; folder or Hub id) or an original `.pth` (then give `teacher_variant`)
    teacher_variant, teacher_config_overrides
                              the architecture of an original `.pth` teacher (`VitPoseConfig.from_variant`); for a
                              saved checkpoint, overrides may only re-target its geometry (`image_size`,
                              `patch_stride`: position embeddings resampled, see `VitPoseModel.with_resolution`)
    teacher_heads             {student dataset name: teacher head name or index}; by default heads match by name
                              (or one head each) and must name the same keypoints in the same order; a head
                              given here needs only the same keypoint count
    teacher_dtype             float32 (default), bfloat16 or float16: the teacher's weights and forward
    output_weight             weight of the output-distillation term (stage output: 1.0; stage student: 1.0 with a
                              teacher, else no teacher term); logged as `loss_distill`
    num_tokens                knowledge tokens learned in stage token (1, as in the paper)
    token_from                stage student: a folder written by `save_pretrained` (or a training checkpoint) of a
                              model with knowledge tokens

"MSE" is the recipe's JointsMSELoss (`joints_mse_loss`): 0.5 x the mean over joints and pixels of the target-weighted
squared difference, each sample averaged over its own head's keypoints. The output term uses the GT's target weights,
so both terms of eq. 6 weigh the same joints. The teacher runs under `no_grad` in eval mode on the same augmented
crops as the student, once per micro-batch; augmentation is random, so its outputs are never reused across steps.

Widths: a token learned at the teacher's width D is stored in the student at that width
(`VitPoseConfig.knowledge_token_dim` = D) and crosses into the student's width C through the fixed map of
`VitPoseEmbeddings.knowledge_token_embeddings`: its first C channels when C < D, zero padding when C > D, rescaled to
the token's RMS. Being fixed, nothing of the student re-learns the token, which stays the teacher's knowledge.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..configuration_vitpose import VitPoseConfig
from ..modeling_vitpose import VitPoseModel
from .config import ConfigError, _build
from .initialization import initialize_model

logger = logging.getLogger(__name__)

STAGES = ("output", "token", "student")
TEACHER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOKEN_KEY = "vit.embeddings.knowledge_tokens"
GEOMETRY_FIELDS = ("image_size", "patch_stride")

# Config fields that must agree between the teacher and the model trained in stage `token` (which is the teacher).
ARCHITECTURE_FIELDS = (
    "image_size", "patch_size", "patch_stride", "patch_embedding_padding", "num_channels", "hidden_size",
    "num_hidden_layers", "num_attention_heads", "mlp_ratio", "qkv_bias", "hidden_act", "layer_norm_eps",
    "layer_attention_types", "window_size", "num_experts", "part_features", "decoder", "decoder_channels",
)


@dataclass
class DistillationSettings:
    """The `distillation:` section of a training config (see the module docstring)."""

    stage: str = "output"
    teacher: str | None = None
    teacher_variant: str | None = None
    teacher_config_overrides: dict[str, Any] = field(default_factory=dict)
    teacher_heads: dict[str, str | int] = field(default_factory=dict)
    teacher_dtype: str = "float32"
    output_weight: float | None = None
    num_tokens: int = 1
    token_from: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"distillation.stage must be one of {', '.join(STAGES)}, got {self.stage!r}.")
        if self.teacher_dtype not in TEACHER_DTYPES:
            raise ConfigError(
                f"distillation.teacher_dtype must be one of {', '.join(TEACHER_DTYPES)}, got {self.teacher_dtype!r}."
            )
        if self.teacher is not None and not isinstance(self.teacher, str):
            raise ConfigError(f"distillation.teacher must be a path or Hub id, got {self.teacher!r}.")
        for key in ("teacher_config_overrides", "teacher_heads"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError(f"distillation.{key} must be a mapping, got {getattr(self, key)!r}.")
        if self.output_weight is not None and (not isinstance(self.output_weight, (int, float)) or self.output_weight < 0):
            raise ConfigError(f"distillation.output_weight must be a number >= 0, got {self.output_weight!r}.")
        geometry_only = set(self.teacher_config_overrides) <= set(GEOMETRY_FIELDS)
        if self.teacher_variant is None and not geometry_only:
            extra = sorted(set(self.teacher_config_overrides) - set(GEOMETRY_FIELDS))
            raise ConfigError(f"distillation.teacher_config_overrides.{extra[0]}: a saved teacher keeps its architecture "
                              f"(only {', '.join(GEOMETRY_FIELDS)} can change); other fields need teacher_variant "
                              "(an original .pth teacher).")
        if self.stage in ("output", "token") and not self.teacher:
            raise ConfigError(f"distillation.teacher is required for stage {self.stage!r}.")
        if self.stage == "token":
            if self.output_weight:
                raise ConfigError("distillation.output_weight: stage 'token' trains with the GT loss only (eq. 5).")
            if self.token_from is not None:
                raise ConfigError("distillation.token_from belongs to stage 'student'; stage 'token' learns the token.")
            if not isinstance(self.num_tokens, int) or self.num_tokens < 1:
                raise ConfigError(f"distillation.num_tokens must be an integer >= 1, got {self.num_tokens!r}.")
        else:
            if self.num_tokens != 1:
                raise ConfigError("distillation.num_tokens belongs to stage 'token' (stage 'student' reads the count "
                                  "from token_from).")
        if self.stage == "output" and self.token_from is not None:
            raise ConfigError("distillation.token_from needs stage 'student'.")
        if self.stage == "output" and self.output_weight == 0:
            raise ConfigError("distillation.output_weight is 0: stage 'output' would distil nothing.")
        if self.stage == "student":
            if not self.token_from:
                raise ConfigError("distillation.token_from is required for stage 'student': the final/ folder of a "
                                  "stage 'token' run.")
            if self.teacher and self.output_weight == 0:
                raise ConfigError("distillation.teacher is given but output_weight is 0: drop one of them.")
            if self.output_weight and not self.teacher:
                raise ConfigError("distillation.output_weight needs distillation.teacher.")

    @property
    def effective_output_weight(self) -> float:
        """The weight of the output term: 0 when no teacher output is used."""
        if self.stage == "token" or not self.teacher:
            return 0.0
        return 1.0 if self.output_weight is None else float(self.output_weight)


# Loading --------------------------------------------------------------------------------------------------------
def load_teacher(
    source: str, teacher_config: VitPoseConfig | None = None, geometry: dict[str, Any] | None = None,
) -> VitPoseModel:
    """The teacher model, frozen and in eval mode.

    `source` is anything `VitPoseModel.from_pretrained` loads (re-targeted to `geometry`, image_size and/or
    patch_stride, when given), or an original `.pth` (then `teacher_config`, whose heads are the student's datasets,
    says the architecture; a head the file lacks is an error).
    """
    try:
        if str(source).endswith((".pth", ".pt")):
            if teacher_config is None:
                raise ConfigError(f"distillation.teacher {source!r} is an original checkpoint: give "
                                  "distillation.teacher_variant (and teacher_config_overrides) for its architecture.")
            teacher, report = initialize_model(teacher_config, source)
            fresh = sorted({key.split(".")[1] for key in report.fresh if key.startswith("heads.")})
            if fresh:
                names = [teacher_config.head_names[int(i)] for i in fresh]
                raise ConfigError(f"distillation.teacher {source!r} has no trained head for datasets {names}.")
        else:
            teacher = VitPoseModel.from_pretrained(source, **(geometry or {}))
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ConfigError(f"distillation.teacher {source!r} could not be loaded: {error}") from error
    teacher.requires_grad_(False)
    return teacher.eval()


def teacher_head_indices(
    teacher_config: VitPoseConfig, student_config: VitPoseConfig, mapping: dict[str, str | int] | None = None,
) -> list[int]:
    """For each student head (dataset), the teacher head that gives its targets; refuses what does not fit.

    A head is chosen by `mapping`, else by name, else (one head each) the teacher's only head. It must have as many
    keypoints, and unless `mapping` chose it, the same keypoint names in the same order.
    """
    mapping = dict(mapping or {})
    student_names, teacher_names = student_config.head_names, teacher_config.head_names
    unknown = sorted(set(mapping) - set(student_names))
    if unknown:
        raise ConfigError(f"distillation.teacher_heads names dataset {unknown[0]!r}, which is not one of the training "
                          f"datasets {student_names}.")
    indices = []
    for layout in student_config.layouts:
        if layout.name in mapping:
            try:
                index = teacher_config.dataset_index(mapping[layout.name])
            except ValueError as error:
                raise ConfigError(f"distillation.teacher_heads.{layout.name}: {error}") from error
        elif layout.name in teacher_names:
            index = teacher_names.index(layout.name)
        elif len(teacher_names) == len(student_names) == 1:
            index = 0
        else:
            raise ConfigError(
                f"The teacher has no head for dataset {layout.name!r} (teacher heads: {teacher_names}); map it with "
                f"distillation.teacher_heads.{layout.name}: <teacher head>."
            )
        teacher_layout = teacher_config.layouts[index]
        if teacher_layout.num_keypoints != layout.num_keypoints:
            raise ConfigError(
                f"Teacher head {teacher_layout.name!r} ({teacher_layout.num_keypoints} keypoints) cannot teach dataset "
                f"{layout.name!r} ({layout.num_keypoints} keypoints)."
            )
        if layout.name not in mapping and tuple(teacher_layout.keypoints) != tuple(layout.keypoints):
            raise ConfigError(
                f"Teacher head {teacher_layout.name!r} does not name the keypoints of dataset {layout.name!r} in the "
                f"same order ({list(teacher_layout.keypoints[:3])}... vs {list(layout.keypoints[:3])}...); if they "
                f"are the same points, say so with distillation.teacher_heads.{layout.name}: {teacher_layout.name}."
            )
        indices.append(index)
    return indices


def check_heatmap_size(teacher_config: VitPoseConfig, student_config: VitPoseConfig) -> None:
    """Teacher and student heatmaps are compared pixel by pixel, so they must have one size."""
    if tuple(teacher_config.heatmap_size) != tuple(student_config.heatmap_size):
        raise ConfigError(
            f"The teacher's heatmaps are {tuple(teacher_config.heatmap_size)} (input {tuple(teacher_config.image_size)}, "
            f"stride {teacher_config.patch_stride}) but the student's are {tuple(student_config.heatmap_size)} (input "
            f"{tuple(student_config.image_size)}); give the teacher the student's input size with "
            "distillation.teacher_config_overrides.image_size."
        )


def architecture_differences(teacher_config: VitPoseConfig, model_config: VitPoseConfig) -> list[str]:
    """`field: teacher value != model value` for each architecture field that differs."""
    differences = []
    for name in ARCHITECTURE_FIELDS:
        ours, theirs = getattr(model_config, name), getattr(teacher_config, name)
        if isinstance(ours, tuple):
            ours = list(ours)
        if isinstance(theirs, tuple):
            theirs = list(theirs)
        if ours != theirs:
            differences.append(f"{name}: teacher {theirs!r} != model {ours!r}")
    return differences


def _weights_file_for(folder: Path, key: str) -> Path:
    """The safetensors file of `folder` that holds `key` (single file or sharded with an index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        if key not in weight_map:
            raise ConfigError(f"distillation.token_from {folder} has no knowledge token ({key}); train one with "
                              "stage 'token' first.")
        return folder / weight_map[key]
    single = folder / "model.safetensors"
    if not single.is_file():
        raise ConfigError(f"distillation.token_from {folder} holds no model.safetensors (a save_pretrained folder "
                          "or a training checkpoint is expected).")
    return single


def load_knowledge_tokens(folder: str | Path) -> torch.Tensor:
    """The (1, num_tokens, width) knowledge tokens of a saved model, read without loading the rest of it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"distillation.token_from does not exist or is not a folder: {folder}")
    path = _weights_file_for(folder, TOKEN_KEY)
    with safe_open(str(path), framework="pt") as handle:
        if TOKEN_KEY not in handle.keys():
            raise ConfigError(f"distillation.token_from {folder} has no knowledge token ({TOKEN_KEY}); train one "
                              "with stage 'token' first.")
        tokens = handle.get_tensor(TOKEN_KEY)
    if tokens.ndim != 3 or tokens.shape[0] != 1:
        raise ConfigError(f"distillation.token_from {folder}: {TOKEN_KEY} has shape {tuple(tokens.shape)}, "
                          "expected (1, num_tokens, width).")
    return tokens.float()


# The distiller ----------------------------------------------------------------------------------------------------
class Distiller:
    """What the training loop calls: `configure` the student's config, `prepare` the built model, then add
    `loss_terms` to the GT loss of every micro-batch (see `vitpose_hf.training.supervised`)."""

    def __init__(self, settings: DistillationSettings):
        self.settings = settings
        self.teacher: VitPoseModel | None = None
        self.teacher_index: torch.Tensor | None = None
        self.tokens: torch.Tensor | None = None
        self.student: VitPoseModel | None = None

    @property
    def output_weight(self) -> float:
        return self.settings.effective_output_weight

    def configure(self, model_config: VitPoseConfig) -> None:
        """Set the knowledge tokens of the config the model is built from, and load and check the teacher: a teacher
        that cannot serve this model is refused here, before anything is trained."""
        s = self.settings
        if s.stage == "token":
            model_config.num_knowledge_tokens = s.num_tokens
            model_config.knowledge_token_dim = None
            # The teacher is frozen as it runs at inference: no stochastic depth, no dropout.
            model_config.drop_path_rate = 0.0
            model_config.attention_dropout = 0.0
        elif s.stage == "student":
            self.tokens = load_knowledge_tokens(s.token_from)
            model_config.num_knowledge_tokens = self.tokens.shape[1]
            width = self.tokens.shape[2]
            model_config.knowledge_token_dim = None if width == model_config.hidden_size else width
            logger.info("Knowledge tokens from %s: %d of width %d (student width %d)", s.token_from,
                        self.tokens.shape[1], width, model_config.hidden_size)
        if s.stage == "token" or self.output_weight > 0:
            geometry = {} if s.teacher_variant else s.teacher_config_overrides
            self.teacher = load_teacher(s.teacher, self._teacher_config_for_pth(model_config), geometry)
            check_heatmap_size(self.teacher.config, model_config)
            self.teacher_index = torch.tensor(teacher_head_indices(self.teacher.config, model_config, s.teacher_heads))
            if s.stage == "token":
                differences = architecture_differences(self.teacher.config, model_config)
                if differences:
                    raise ConfigError(
                        "Stage 'token' trains the teacher itself: the model section must describe the teacher "
                        f"({s.teacher}); differences: {'; '.join(differences)}."
                    )

    def _teacher_config_for_pth(self, model_config: VitPoseConfig) -> VitPoseConfig | None:
        """The architecture of an original `.pth` teacher, with the student's datasets as heads."""
        s = self.settings
        if s.teacher_variant is not None:
            try:
                return VitPoseConfig.from_variant(
                    s.teacher_variant, **{**s.teacher_config_overrides, "keypoint_heads": model_config.keypoint_heads}
                )
            except (ValueError, TypeError) as error:
                raise ConfigError(f"distillation.teacher_variant / teacher_config_overrides: {error}") from error
        if s.stage == "token":  # the model trained is the teacher
            config = copy.deepcopy(model_config)
            config.num_knowledge_tokens, config.knowledge_token_dim = 0, None
            return config
        return None

    def prepare(self, model: VitPoseModel, device: torch.device | str) -> None:
        """Stage token: give `model` the teacher's weights and freeze all but the tokens. Stage student: put the
        learned tokens into `model`, frozen. With an output term: move the teacher to `device` in its dtype."""
        self.student = model
        if self.settings.stage == "token":
            self._load_teacher_into(model)
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(name == TOKEN_KEY)
            self.teacher = None  # the model is the teacher now
            logger.info("Stage token: training %d knowledge token(s) of the frozen teacher %s",
                        self.settings.num_tokens, self.settings.teacher)
            return
        if self.settings.stage == "student":
            tokens = model.vit.embeddings.knowledge_tokens
            if tokens is None or tuple(tokens.shape) != tuple(self.tokens.shape):
                raise ValueError(f"The student's knowledge tokens {None if tokens is None else tuple(tokens.shape)} do "
                                 f"not fit those of {self.settings.token_from} {tuple(self.tokens.shape)}; call "
                                 "configure() before building the model.")
            with torch.no_grad():
                tokens.copy_(self.tokens.to(tokens.dtype))
            tokens.requires_grad_(False)
        if self.teacher is not None:
            self.teacher.to(device=device, dtype=TEACHER_DTYPES[self.settings.teacher_dtype])
            self.teacher_index = self.teacher_index.to(device)

    def _load_teacher_into(self, model: VitPoseModel) -> None:
        """Copy the teacher's weights into the model (heads by dataset), all but the fresh knowledge tokens."""
        state = {}
        for key, value in self.teacher.state_dict().items():
            if key == TOKEN_KEY:
                continue
            if key.startswith("heads."):
                _, index, rest = key.split(".", 2)
                for j, source in enumerate(self.teacher_index.tolist()):
                    if source == int(index):
                        state[f"heads.{j}.{rest}"] = value
            else:
                state[key] = value
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [key for key in missing if key != TOKEN_KEY]
        if missing or unexpected:
            raise ValueError(f"The teacher {self.settings.teacher} does not fill the model: missing {missing[:8]}, "
                             f"unexpected {unexpected[:8]}.")

    @torch.no_grad()
    def teacher_heatmaps(self, pixel_values: torch.Tensor, dataset_index: torch.Tensor) -> torch.Tensor:
        """K_t: the teacher's heatmaps of these crops, each sample through the teacher head of its dataset."""
        teacher_index = self.teacher_index.to(dataset_index.device)[dataset_index.long()]
        return self.teacher(pixel_values=pixel_values, dataset_index=teacher_index).heatmaps

    def loss_terms(self, batch: dict[str, Any], outputs: Any) -> dict[str, torch.Tensor]:
        """`{"loss_distill": output_weight * MSE(K_s, K_t)}` with the GT's target weights and per-sample heads, or
        `{}` when no teacher output is used (stage token, or stage student without a teacher)."""
        if self.teacher is None or self.output_weight == 0:
            return {}
        if self.student is None:
            raise RuntimeError("Distiller.prepare(model, device) must run before loss_terms.")
        dataset_index = batch["dataset_index"].to(outputs.heatmaps.device)
        targets = self.teacher_heatmaps(batch["pixel_values"], dataset_index)
        if targets.shape != outputs.heatmaps.shape:
            raise ValueError(f"Teacher heatmaps {tuple(targets.shape)} and student heatmaps "
                             f"{tuple(outputs.heatmaps.shape)} differ in shape.")
        mse = self.student.compute_loss(outputs.heatmaps, targets.float(), batch.get("target_weight"), dataset_index)
        return {"loss_distill": self.output_weight * mse}


def build_distiller(section: dict[str, Any] | DistillationSettings) -> Distiller:
    """A `Distiller` from the `distillation:` mapping of a training config (unknown keys are errors naming them)."""
    settings = section if isinstance(section, DistillationSettings) else _build(DistillationSettings, section, "distillation")
    return Distiller(settings)


__all__ = [
    "DistillationSettings",
    "Distiller",
    "build_distiller",
    "check_heatmap_size",
    "load_knowledge_tokens",
    "load_teacher",
    "teacher_head_indices",
]
