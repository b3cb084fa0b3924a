"""Original checkpoint -> a verified `save_pretrained` folder, its model card, and the Hub.

The folder is staged beside the output and renamed into place only when complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..configuration_vitpose import VitPoseConfig
from ..image_processing_vitpose import VitPoseImageProcessor
from ..modeling_vitpose import VitPoseModel
from . import reference
from .original import (
    OriginalCheckpointError,
    OriginalConversionReport,
    _auto_variant_name,
    _describe,
    _shortlist,
    convert_original_state_dict,
    infer_variant,
    load_original_checkpoint,
    original_architecture,
    original_attention_heads,
    original_config,
    split_dataset_expert,
    unwrap_original_state_dict,
)

# Original checkpoint -> model folder (and Hub repo) -------------------------------------------------------------------
COCO_AP_SOURCE = "https://github.com/ViTAE-Transformer/ViTPose"


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
    return Path(__file__).resolve().parents[3] / "model_cards"


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
    converted, report = convert_original_state_dict(state_dict, config, strict=True)
    with torch.device("meta"):
        model = VitPoseModel(config)
    model.load_state_dict({k: v.contiguous() for k, v in converted.items()}, strict=True, assign=True)
    left = [name for name, tensor in list(model.named_parameters()) + list(model.named_buffers()) if tensor.is_meta]
    if left:
        raise OriginalCheckpointError(f"Weights left uninitialised after conversion: {_shortlist(left)}")
    return model.eval(), report


def _image_processor(config: VitPoseConfig):
    """The processor saved beside the weights."""
    return VitPoseImageProcessor.from_model_config(config)


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
    if verify:
        verification["original_reference"] = reference.check_against_original(
            model, state_dict, num_attention_heads=original_attention_heads(state_dict)
        )
        log(f"Original-layout reference forward: max abs heatmap difference {verification['original_reference']}")
    if split_dataset is not None:
        dataset = config.head_names[config.dataset_index(split_dataset)]
        full_model, model = model, split_dataset_expert(model, dataset=dataset)
        if verify:
            verification["split"] = reference.check_split(model, full_model, dataset)
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
            verification["published"] = reference.check_published_keypoints(
                model, _image_processor(model.config), verify_image, expected
            )
            log(f"Published reference values on {verify_image}: {verification['published']}")

    folder_name = output.name if output is not None else name
    # A dry run stages in the temporary folder: it creates nothing beside output_dir.
    parent = output.parent if output is not None and not dry_run else Path(tempfile.gettempdir())
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
    except OSError as error:
        shutil.rmtree(staged, ignore_errors=True)
        if error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"No space left on the disk of {parent} while writing the converted model "
                                        f"({error.filename or folder_name}); the output folder is unchanged") from error
        raise
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

