"""VitPoseConfig: everything that shapes a ViTPose model, including its keypoint heads."""

from __future__ import annotations

import copy
import numbers
from typing import Any

from transformers import PreTrainedConfig
from transformers.backbone_utils import BackboneConfigMixin

from .codec import MSRA_CODEC, UDP_CODEC, HeadCodec
from .keypoints import KeypointLayout, get_layout

# (hidden_size, num_hidden_layers, num_attention_heads, drop_path_rate, part_features) per size.
MODEL_SIZES: dict[str, tuple[int, int, int, float, int]] = {
    "small": (384, 12, 12, 0.1, 96),
    "base": (768, 12, 12, 0.3, 192),
    "large": (1024, 24, 16, 0.5, 256),
    "huge": (1280, 32, 16, 0.55, 320),
}
# Head (= MoE expert) order of the released multi-dataset checkpoints.
MULTI_TASK_DATASETS = ("coco", "aic", "mpii")
VITPOSE_PLUS_DATASETS = ("coco", "aic", "mpii", "ap10k", "apt36k", "wholebody")
ATTENTION_TYPES = ("full", "window", "shift_window", "pool_window", "shift_pool_window")
# Input (height, width) presets of the paper's Table 3 (224x224 aside); `image_size` also accepts these names.
INPUT_RESOLUTIONS: dict[str, tuple[int, int]] = {
    "256x192": (256, 192), "256x256": (256, 256), "384x288": (384, 288), "384x384": (384, 384), "576x432": (576, 432),
}


# Expected kinds of the scalar fields: a config.json edited by hand fails here, naming the field, not deep in a layer.
_INT_FIELDS = ("patch_size", "patch_stride", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "full_attention_interval", "num_experts", "part_features", "decoder_channels", "num_knowledge_tokens")
_OPTIONAL_INT_FIELDS = ("patch_padding", "knowledge_token_dim")
_FLOAT_FIELDS = ("mlp_ratio", "layer_norm_eps", "drop_path_rate", "attention_dropout", "initializer_range")
_BOOL_FIELDS = ("qkv_bias",)
_STR_FIELDS = ("hidden_act", "decoder")


def check_field_types(config: Any) -> None:
    """Raise TypeError naming the first scalar field whose value has the wrong kind (e.g. hidden_size "32")."""

    def is_int(value: Any) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    kinds = [(_INT_FIELDS, is_int, "an integer"),
             (_OPTIONAL_INT_FIELDS, lambda v: v is None or is_int(v), "an integer or null"),
             (_FLOAT_FIELDS, lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool), "a number"),
             (_BOOL_FIELDS, lambda v: isinstance(v, bool), "true or false"),
             (_STR_FIELDS, lambda v: isinstance(v, str), "a string")]
    for names, accepts, kind in kinds:
        for name in names:
            value = getattr(config, name)
            if not accepts(value):
                raise TypeError(f"VitPoseConfig.{name} must be {kind}, got {value!r} ({type(value).__name__}).")


def parse_image_size(image_size: str | list[int] | tuple[int, ...]) -> tuple[int, int]:
    """(height, width) from a pair or a "HEIGHTxWIDTH" string such as a key of `INPUT_RESOLUTIONS`."""
    if isinstance(image_size, str):
        parts = image_size.lower().split("x")
        if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
            raise ValueError(
                f"image_size {image_size!r} is not 'HEIGHTxWIDTH'; presets: {', '.join(INPUT_RESOLUTIONS)}."
            )
        return int(parts[0]), int(parts[1])
    if not isinstance(image_size, (list, tuple)) or not all(
        isinstance(side, numbers.Integral) and not isinstance(side, bool) for side in image_size
    ):
        raise TypeError(f"image_size must be (height, width) integers or 'HEIGHTxWIDTH', got {image_size!r}.")
    size = tuple(int(side) for side in image_size)
    if len(size) != 2:
        raise ValueError(f"image_size must be (height, width), got {image_size!r}.")
    return size


# How the original release trained each dataset's head (its per-dataset pipelines and test configs): COCO and MPII
# with UDP, the others with the standard crop, MSRA targets and standard decoding (flip test with shift_heatmap).
# The COCO+AIC+MPII release ships no config of its own; it is taken to follow the ViTPose+ pipelines, which train
# the same datasets this way.
ORIGINAL_HEAD_CODECS: dict[str, HeadCodec] = {
    "coco": UDP_CODEC, "mpii": UDP_CODEC, "aic": MSRA_CODEC, "crowdpose": MSRA_CODEC, "ochuman": MSRA_CODEC,
    "ap10k": MSRA_CODEC, "apt36k": MSRA_CODEC, "wholebody": MSRA_CODEC,
}


def _original_codecs(heads: list[str]) -> dict[str, dict[str, Any]]:
    return {head: ORIGINAL_HEAD_CODECS[head].to_dict() for head in heads}


def _variant_kwargs() -> dict[str, dict[str, Any]]:
    variants: dict[str, dict[str, Any]] = {}
    for size, (hidden, depth, heads, drop_path, part) in MODEL_SIZES.items():
        dims = dict(hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=heads, drop_path_rate=drop_path)
        coco = dict(keypoint_heads=["coco"], head_codecs=_original_codecs(["coco"]))
        variants[f"vitpose-{size}"] = dict(dims, decoder="classic", **coco)
        variants[f"vitpose-{size}-simple"] = dict(dims, decoder="simple", **coco)
        variants[f"vitpose-plus-{size}"] = dict(
            dims, decoder="classic", num_experts=len(VITPOSE_PLUS_DATASETS), part_features=part,
            keypoint_heads=list(VITPOSE_PLUS_DATASETS), head_codecs=_original_codecs(list(VITPOSE_PLUS_DATASETS)),
        )
    base = variants["vitpose-base"]
    variants["vitpose-base-coco-aic-mpii"] = dict(
        base, keypoint_heads=list(MULTI_TASK_DATASETS), head_codecs=_original_codecs(list(MULTI_TASK_DATASETS))
    )
    return variants


VARIANTS = _variant_kwargs()


class VitPoseConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""
    Configuration of a ViTPose model: a plain ViT encoder, one heatmap head per keypoint dataset.

    A bare `VitPoseConfig()` is the paper's default, ViTPose-B with the classic decoder at 256x192 and one COCO-17
    head. `VitPoseConfig.from_variant("vitpose-plus-large")` gives the released variants.

    Args:
        image_size: input (height, width) the position embeddings are laid out for, or a preset name such as
            "384x288" (`INPUT_RESOLUTIONS`); other input sizes are interpolated at run time.
        patch_size: side of the square patch-embedding kernel.
        patch_stride: stride of the patch embedding; 16 gives 1/16 feature maps, 8 the overlapping 1/8 variant.
        patch_padding: padding of the patch embedding; `None` uses the original's `4 + 2 * (ratio // 2 - 1)`.
        hidden_size, num_hidden_layers, num_attention_heads, mlp_ratio, qkv_bias, hidden_act: the ViT's shape.
        layer_norm_eps: 1e-6 as in the original (transformers' built-in ViTPose uses 1e-12).
        drop_path_rate: stochastic-depth rate of the last block; block i gets `i / (depth - 1)` of it.
        attention_dropout: dropout on attention probabilities (0 in every released model).
        attention_type: per-layer attention, one of `ATTENTION_TYPES` or a list with one entry per layer. A single
            shifted type alternates as in Swin: even layers use unshifted windows, odd layers shifted ones; in a list,
            each "shift_*" entry shifts. See `vitpose_hf.window_attention`.
        window_size: (height, width) of attention windows in tokens, for the window attention types.
        full_attention_interval: with window attention, every N-th layer (N, 2N, ...) uses full attention; 0 never.
        num_experts: >1 turns the MLPs into ViTPose+ mixtures: `fc2` keeps `hidden_size - part_features` outputs
            and one expert per dataset adds `part_features`.
        part_features: width of each expert's output.
        decoder: "classic" (two deconvolutions) or "simple" (bilinear x4 and a 3x3 convolution).
        decoder_channels: width of the classic decoder's deconvolutions.
        keypoint_heads: one keypoint layout per dataset, each a layout name (see `vitpose_hf.keypoints`) or a dict
            with name, keypoints, flip_pairs, skeleton (and optionally oks_sigmas, joint_weights).
            Head `i` is trained on dataset `i` and, with experts, uses expert `i`.
        head_codecs: `{head name: vitpose_hf.codec.HeadCodec dict}`: how each head's targets are encoded and its
            heatmaps decoded (UDP or standard crop and targets, sigma, refinement, flip-test shift). Heads left out
            use UDP; entries naming no head of the model are dropped, so a config cut down to some of its heads
            keeps theirs. `from_variant` sets what the original trained each released head with.
        num_knowledge_tokens: learned tokens appended after the patch embedding (knowledge-token distillation).
        knowledge_token_dim: width the knowledge token was learned at; when it differs from `hidden_size` a fixed
            projection maps it in (see `modeling_vitpose.VitPoseEmbeddings`).
        initializer_range: std of the truncated normal used for linear layers and position embeddings.
    """

    model_type = "vitpose_hf"

    image_size: list[int] | tuple[int, ...] = (256, 192)
    patch_size: int = 16
    patch_stride: int = 16
    patch_padding: int | None = None
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: int | float = 4
    qkv_bias: bool = True
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    drop_path_rate: float = 0.3
    attention_dropout: float = 0.0
    attention_type: str | list[str] = "full"
    window_size: list[int] | tuple[int, ...] = (8, 8)
    full_attention_interval: int = 0
    num_experts: int = 1
    part_features: int = 0
    decoder: str = "classic"
    decoder_channels: int = 256
    keypoint_heads: list[Any] | None = None
    head_codecs: dict[str, dict[str, Any]] | None = None
    num_knowledge_tokens: int = 0
    knowledge_token_dim: int | None = None
    initializer_range: float = 0.02
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        check_field_types(self)
        out_indices = kwargs.pop("out_indices", None)
        out_features = kwargs.pop("out_features", None)
        self.image_size = list(parse_image_size(self.image_size))
        if not isinstance(self.window_size, (list, tuple)):  # a bare int would fail later with a bare TypeError
            raise ValueError(f"window_size must be (height, width) in tokens, got {self.window_size!r}.")
        self.window_size = [int(s) for s in self.window_size]
        if self.keypoint_heads is None:
            self.keypoint_heads = ["coco"]
        self._normalise_head_codecs()
        if _installed_pipeline_serves(kwargs.get("custom_pipelines")):
            kwargs.pop("custom_pipelines")
        self.stage_names = ["stem"] + [f"stage{i}" for i in range(1, self.num_hidden_layers + 1)]
        self.set_output_features_output_indices(out_indices=out_indices, out_features=out_features)
        super().__post_init__(**kwargs)
        self._label_keypoints()
        self.validate_vitpose()

    def __setattr__(self, key: str, value: Any) -> None:
        # Layouts are normalised to dicts however they arrive: at construction or as a `from_pretrained` override
        # such as `keypoint_heads=["mpii"]`, which transformers applies with setattr after construction.
        if key == "keypoint_heads" and value is not None:
            value = [get_layout(head).to_dict() for head in value]
        super().__setattr__(key, value)
        if key == "keypoint_heads" and value is not None and "head_codecs" in self.__dict__:
            self._normalise_head_codecs()
        if key == "keypoint_heads" and value is not None and "id2label" in self.__dict__:
            self._label_keypoints()

    def _normalise_head_codecs(self) -> None:
        """One codec entry per head, by head name (UDP where none is given), so a re-targeted head set keeps its
        heads' encodings."""
        codecs = self.head_codecs if self.head_codecs is not None else {}
        if not isinstance(codecs, dict):
            raise TypeError(f"head_codecs must map head names to codec settings, got {type(codecs).__name__}.")
        super().__setattr__("head_codecs", {
            head["name"]: HeadCodec.from_dict(codecs.get(head["name"])).to_dict() for head in self.keypoint_heads
        })

    def _label_keypoints(self) -> None:
        """`id2label` / `label2id` name the first head's keypoints (heatmap channel -> name), as transformers'
        built-in ViTPose does, instead of the generic LABEL_0, LABEL_1."""
        names = self.keypoint_heads[0]["keypoints"]
        super().__setattr__("id2label", dict(enumerate(names)))
        super().__setattr__("label2id", {name: index for index, name in enumerate(names)})

    def validate_vitpose(self) -> None:
        """Reject inconsistent settings early, with a message naming the field."""
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"image_size must be (height, width) with positive sides, got {self.image_size}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})."
            )
        if self.patch_size % self.patch_stride != 0 or self.patch_size // self.patch_stride not in (1, 2):
            raise ValueError(
                f"patch_stride ({self.patch_stride}) must be patch_size ({self.patch_size}) or half of it "
                "(1/16 or overlapping 1/8 feature maps)."
            )
        if self.feature_stride not in (4, 8, 16, 32):
            raise ValueError(f"patch_stride {self.patch_stride} gives no 1/4-resolution heatmap; use 8 or 16.")
        if self.decoder not in ("classic", "simple"):
            raise ValueError(f"decoder must be 'classic' or 'simple', got {self.decoder!r}.")
        if self.num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {self.num_experts}.")
        if self.num_experts > 1:
            if not 0 < self.part_features < self.hidden_size:
                raise ValueError(
                    f"part_features ({self.part_features}) must be in (0, hidden_size={self.hidden_size}) "
                    "when num_experts > 1."
                )
            if self.num_experts < len(self.keypoint_heads):
                raise ValueError(
                    f"{len(self.keypoint_heads)} keypoint heads need as many experts, got num_experts={self.num_experts}."
                )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")
        names = [head["name"] for head in self.keypoint_heads]
        if len(set(names)) != len(names):
            raise ValueError(f"keypoint_heads names must be unique, got {names}.")
        for layer_type in self.layer_attention_types:
            if layer_type not in ATTENTION_TYPES:
                raise ValueError(f"attention_type {layer_type!r} is not one of {ATTENTION_TYPES}.")
        if isinstance(self.attention_type, (list, tuple)) and len(self.attention_type) != self.num_hidden_layers:
            raise ValueError(
                f"attention_type lists {len(self.attention_type)} layers, the model has {self.num_hidden_layers}."
            )
        if len(self.window_size) != 2 or min(self.window_size) <= 0:
            raise ValueError(f"window_size must be (height, width) in tokens, got {self.window_size}.")

    # Derived geometry -------------------------------------------------------------------------------------------
    @property
    def patch_embedding_padding(self) -> int:
        if self.patch_padding is not None:
            return self.patch_padding
        ratio = self.patch_size // self.patch_stride
        return 4 + 2 * (ratio // 2 - 1)

    def token_grid(self, image_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """Number of tokens (rows, columns) the patch embedding makes of an input of `image_size`."""
        height, width = image_size if image_size is not None else self.image_size
        pad, kernel, stride = self.patch_embedding_padding, self.patch_size, self.patch_stride
        return (height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1

    @property
    def feature_stride(self) -> int:
        return self.patch_stride

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(height, width) of the heatmaps: four times the token grid."""
        rows, cols = self.token_grid()
        factor = self.feature_stride // 4
        return rows * factor, cols * factor

    @property
    def layer_attention_types(self) -> list[str]:
        if isinstance(self.attention_type, (list, tuple)):
            types = list(self.attention_type)
        else:
            unshifted = self.attention_type.replace("shift_", "")
            types = [self.attention_type if i % 2 else unshifted for i in range(self.num_hidden_layers)]
        if self.full_attention_interval > 0:
            types = [
                "full" if (i + 1) % self.full_attention_interval == 0 else t for i, t in enumerate(types)
            ]
        return types

    # Heads ------------------------------------------------------------------------------------------------------
    @property
    def head_names(self) -> list[str]:
        return [head["name"] for head in self.keypoint_heads]

    @property
    def layouts(self) -> list[KeypointLayout]:
        return [KeypointLayout.from_dict(head) for head in self.keypoint_heads]

    def layout(self, dataset: int | str | None = None) -> KeypointLayout:
        return self.layouts[self.dataset_index(dataset)]

    def head_codec(self, dataset: int | str | None = None) -> HeadCodec:
        """The encoding and decoding settings of a head (by dataset name or index; None: the first head)."""
        return HeadCodec.from_dict(self.head_codecs[self.head_names[self.dataset_index(dataset)]])

    def dataset_index(self, dataset: int | str | None) -> int:
        """Head index of a dataset given by index or name (None: the first head)."""
        if dataset is None:
            return 0
        if isinstance(dataset, str):
            names = self.head_names
            if dataset not in names:
                raise ValueError(f"Unknown dataset {dataset!r}: this model's heads are {names}.")
            return names.index(dataset)
        if isinstance(dataset, bool) or not isinstance(dataset, numbers.Integral):
            raise TypeError(f"dataset must be a head's name or integer index, got {dataset!r} ({type(dataset).__name__}).")
        index = int(dataset)
        if not 0 <= index < len(self.keypoint_heads):
            raise ValueError(f"dataset_index {index} is out of range: this model has {len(self.keypoint_heads)} heads.")
        return index

    # Variants ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_variant(cls, name: str, **overrides: Any) -> "VitPoseConfig":
        """Config of a released variant, e.g. "vitpose-base-simple" or "vitpose-plus-huge"; overrides win.

        Heads given in `overrides` keep the variant's codec of the head of the same name (UDP for a name the variant
        lacks), so a ViTPose+ fine-tune of its AIC head still encodes AIC as it was trained.
        """
        if name not in VARIANTS:
            raise ValueError(f"Unknown ViTPose variant {name!r}; known: {sorted(VARIANTS)}.")
        kwargs = copy.deepcopy(VARIANTS[name])
        kwargs.update(overrides)
        return cls(**kwargs)


def _installed_pipeline_serves(custom_pipelines: dict | None) -> bool:
    """True when the saved `custom_pipelines` point at the pipeline this installed package already registered.

    The entry is for readers without the package (`trust_remote_code=True`). Where the package is installed and
    registered, `pipeline(task, model=folder)` would still refuse to run without `trust_remote_code` because of it;
    so the loaded config drops it, and `save_pretrained` writes it again.
    """
    if not custom_pipelines:
        return False
    from transformers.pipelines import PIPELINE_REGISTRY

    sibling = __name__.rpartition(".")[0] + ".pipeline"
    for task in custom_pipelines:
        impl = PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl")
        if impl is None or impl.__module__ != sibling:
            return False
    return True


__all__ = ["INPUT_RESOLUTIONS", "MODEL_SIZES", "ORIGINAL_HEAD_CODECS", "VARIANTS", "VitPoseConfig", "parse_image_size"]
