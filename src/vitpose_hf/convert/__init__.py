"""Weight layouts: ours <-> transformers' built-in ViTPose ("vitpose") <-> the original mmpose release, and the
release writer that turns an original checkpoint into a verified, shareable folder.

- `transformers_format`: the built-in format, both ways.
- `vit`: transformers' ViT / ViTMAE backbones as initialisation.
- `original`: the original `.pth` files (safe loading, key map, architecture inference, expert split).
- `reference`: an independent original-layout forward, for verification.
- `release`: staging, model card and Hub push of a converted checkpoint.

Submodules load on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "transformers_format": (
        "config_from_transformers", "config_to_transformers", "export_to_transformers",
        "is_transformers_vitpose_checkpoint", "load_transformers_vitpose", "ours_to_transformers", "transformers_to_ours",
    ),
    "vit": ("vit_to_ours",),
    "original": (
        "ORIGINAL_SKIPPED_KEYS", "OriginalCheckpointError", "OriginalConversionReport", "convert_original_state_dict",
        "expected_state_shapes", "infer_variant", "load_original_checkpoint", "load_original_weights",
        "original_architecture", "original_config", "original_key_to_ours", "split_dataset_expert",
        "unwrap_original_state_dict",
    ),
    "reference": ("VerificationError", "check_against_original", "check_split", "original_heatmaps"),
    "release": (
        "ConversionResult", "build_model_from_original", "convert_original_checkpoint", "default_model_card_dir",
        "push_folder_to_hub", "render_model_card",
    ),
})
