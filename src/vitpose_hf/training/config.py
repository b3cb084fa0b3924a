"""The training configuration: one YAML file, checked in full before anything runs.

    model:           which ViTPose to build and where its weights start from
    datasets:        one entry per keypoint dataset (each gets its own head), with its validation split
    optimization:    the recipe: AdamW, layer-wise lr decay, warmup then step decay, clipping, freezing
    augmentation:    `TopDownAugmentation` arguments (the recipe's defaults when left out)
    distillation:    optional teacher (see `vitpose_hf.training.distillation`)
    everything else: the run (output dir, steps, batch size, precision, checkpoints, evaluation, logging)

Unknown keys are errors that name the key (`optimization.lerning_rate`), and dataset files are checked before the
model is built, so a typo never costs a training run.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the offending key or file."""


@dataclass
class ModelSection:
    """Args:
        variant: a `VitPoseConfig.from_variant` name (the heads come from `datasets`).
        config_overrides: `VitPoseConfig` fields on top of the variant (e.g. sizes, image_size, drop_path_rate).
        init_from: starting weights: a folder or Hub id of ours or of transformers' built-in ViTPose, an original
            `.pth`, or a transformers ViT / ViTMAE backbone. Heads for keypoint sets the source lacks start fresh.
        init_backbone_only: take only the backbone from `init_from`, whatever heads it has.
    """

    variant: str = "vitpose-base"
    config_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    init_backbone_only: bool = False


@dataclass
class SyntheticSection:
    """Generate the dataset with `vitpose_hf.data.generate_synthetic_dataset` when its annotation file is absent."""

    num_images: int = 1000
    seed: int = 0
    image_size: list[int] = field(default_factory=lambda: [256, 256])
    max_people: int = 3


@dataclass
class DatasetSection:
    """Args:
        name: the dataset's head name (also the key of its metrics in eval_results.json).
        layout: a registered keypoint layout name, or a dict declaring a custom one (`KeypointLayout` fields).
        annotation_file, image_root: training annotations (COCO json; `format` mpii or aic for those) and images.
        format: "coco", "mpii" or "aic".
        probability: share of the training draws; left out for every dataset: proportional to size (the original).
        val_annotation_file, val_image_root: the validation split (COCO-format json).
        val_detections: a COCO detection-results file: evaluate on detector boxes (rescoring and OKS-NMS).
        metric: "coco" (keypoint AP with the layout's OKS sigmas) or "pckh" (MPII).
        synthetic, val_synthetic: generate the synthetic dataset at these paths when missing.
    """

    name: str = ""
    layout: str | dict[str, Any] = "coco"
    annotation_file: str = ""
    image_root: str = ""
    format: str = "coco"
    probability: float | None = None
    val_annotation_file: str | None = None
    val_image_root: str | None = None
    val_detections: str | None = None
    metric: str = "coco"
    synthetic: SyntheticSection | None = None
    val_synthetic: SyntheticSection | None = None


@dataclass
class OptimizationSection:
    """The recipe of the paper (REFERENCE section 3). `layer_decay_rate` None: the released value for the size."""

    learning_rate: float = 5e-4
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    layer_decay_rate: float | None = None
    max_grad_norm: float | None = 1.0
    warmup_steps: int = 500
    warmup_ratio: float = 0.001
    lr_decay_milestones: list[int] = field(default_factory=lambda: [170, 200])
    lr_decay_unit: str = "epochs"
    lr_decay_gamma: float = 0.1
    freeze: str = "none"


@dataclass
class RunSection:
    """The keys of every run, training or MAE pre-training: where it writes, how long it runs, batch, precision,
    checkpoints, evaluation and logging cadence, trackers, the datasets and their augmentation."""

    output_dir: str = "outputs/vitpose"
    seed: int = 0
    per_device_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    num_epochs: int | None = 210
    max_steps: int | None = None
    samples_per_epoch: int | None = None
    mixed_precision: str = "no"
    num_workers: int = 2
    logging_steps: int = 20
    checkpointing_steps: int | None = 1000
    checkpoints_total_limit: int | None = 2
    eval_steps: int | None = None
    report_to: str | None = None
    push_to_hub: str | None = None
    datasets: list[DatasetSection] = field(default_factory=list)
    augmentation: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingConfig(RunSection):
    """A whole training run; see the module docstring for the sections."""

    eval_batch_size: int = 64
    eval_flip_test: bool = True
    model: ModelSection = field(default_factory=ModelSection)
    optimization: OptimizationSection = field(default_factory=OptimizationSection)
    distillation: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not self.datasets:
            raise ConfigError("datasets: give at least one training dataset.")
        names = [d.name for d in self.datasets]
        for i, dataset in enumerate(self.datasets):
            where = f"datasets[{i}]"
            if not dataset.name:
                raise ConfigError(f"{where}.name is missing.")
            if not dataset.annotation_file or not dataset.image_root:
                raise ConfigError(f"{where} ({dataset.name}): annotation_file and image_root are required.")
            if dataset.format not in ("coco", "mpii", "aic"):
                raise ConfigError(f"{where}.format must be coco, mpii or aic, got {dataset.format!r}.")
            if dataset.metric not in ("coco", "pckh"):
                raise ConfigError(f"{where}.metric must be coco or pckh, got {dataset.metric!r}.")
            if bool(dataset.val_annotation_file) != bool(dataset.val_image_root):
                raise ConfigError(f"{where} ({dataset.name}): give both val_annotation_file and val_image_root.")
        if len(set(names)) != len(names):
            raise ConfigError(f"datasets: names must be unique, got {names}.")
        probabilities = [d.probability for d in self.datasets]
        if any(p is None for p in probabilities) and any(p is not None for p in probabilities):
            raise ConfigError("datasets: give `probability` for every dataset or for none (then: proportional to size).")
        if self.num_epochs is None and self.max_steps is None:
            raise ConfigError("Give num_epochs or max_steps (max_steps wins when both are given).")
        for key in ("per_device_batch_size", "gradient_accumulation_steps", "eval_batch_size", "logging_steps"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}.")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}.")
        opt = self.optimization
        if opt.lr_decay_unit not in ("epochs", "steps"):
            raise ConfigError(f"optimization.lr_decay_unit must be epochs or steps, got {opt.lr_decay_unit!r}.")
        if opt.freeze not in ("none", "attention", "ffn", "backbone"):
            raise ConfigError(f"optimization.freeze must be none, attention, ffn or backbone, got {opt.freeze!r}.")

    def check_paths(self) -> None:
        """Every file the run reads exists (synthetic datasets excepted: they are generated when missing)."""
        for i, dataset in enumerate(self.datasets):
            checks = [("annotation_file", dataset.annotation_file, dataset.synthetic),
                      ("image_root", dataset.image_root, dataset.synthetic),
                      ("val_annotation_file", dataset.val_annotation_file, dataset.val_synthetic),
                      ("val_image_root", dataset.val_image_root, dataset.val_synthetic),
                      ("val_detections", dataset.val_detections, None)]
            for key, path, generated in checks:
                if path and generated is None and not Path(path).exists():
                    raise ConfigError(f"datasets[{i}].{key} of dataset {dataset.name!r} does not exist: {path}")
        init = self.model.init_from
        if init and (init.endswith(".pth") or init.endswith(".pt")) and not Path(init).exists():
            raise ConfigError(f"model.init_from does not exist: {init}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: Any, where: str) -> Any:
    """A dataclass instance from plain YAML data, refusing keys the dataclass does not have."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"Unknown config key {prefix}{unknown[0]} (known keys: {', '.join(sorted(known))}).")
    values = {}
    for key, value in data.items():
        values[key] = _convert(hints[key], value, f"{where}.{key}" if where else key)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where or 'config'}: {error}") from error


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Nested sections become dataclasses; lists of sections are converted item by item."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return _build(option, value, where)
        if typing.get_origin(option) is list and isinstance(value, list):
            (item,) = typing.get_args(option) or (Any,)
            if dataclasses.is_dataclass(item):
                return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """`optimization.learning_rate=1e-3` -> (["optimization", "learning_rate"], 0.001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key.subkey=value.")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = node[int(part)]
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"Override {'.'.join(path)}: {'.'.join(path[:i + 1])} is not a section.")
    if isinstance(node, list):
        node[int(path[-1])] = value
    else:
        node[path[-1]] = value


def load_config(
    cls: type, path: str | Path | None = None, overrides: dict[str, Any] | None = None,
    dotted: list[str] | None = None,
) -> Any:
    """Read a YAML file into the dataclass `cls`, apply `overrides` (top-level keys, None ignored) and `dotted`
    overrides ("a.b=value"), and validate; unknown keys are errors naming them."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys.")
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    for text in dotted or []:
        apply_override(data, *parse_override(text))
    return _build(cls, data, "")


def load_training_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, dotted: list[str] | None = None
) -> TrainingConfig:
    """The training recipe of a YAML file (see `load_config`)."""
    return load_config(TrainingConfig, path, overrides, dotted)


def save_training_config(config: Any, path: str | Path) -> None:
    """Write a config dataclass back as YAML (what a run actually used, overrides included)."""
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))


# The command line of the run scripts (scripts/train.py, scripts/pretrain_mae.py) -----------------------------------
def add_run_arguments(parser: argparse.ArgumentParser, config_help: str, set_example: str) -> None:
    """The options both run scripts share; each maps onto a config key (`run_overrides`)."""
    parser.add_argument("--config", required=True, help=config_help)
    parser.add_argument("--output-dir", help="where checkpoints, logs and final/ go")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides num_epochs)")
    parser.add_argument("--num-epochs", type=int)
    parser.add_argument("--per-device-batch-size", type=int)
    parser.add_argument("--gradient-accumulation-steps", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--checkpointing-steps", type=int)
    parser.add_argument("--eval-steps", type=int)
    parser.add_argument("--resume-from-checkpoint", help="'latest' or a checkpoint folder of this run")
    parser.add_argument("--report-to", help="tracker for accelerate: tensorboard, trackio, wandb, all, ...")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="push OUTPUT/final with its model card at the end")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"any other config key, dotted (e.g. {set_example}); repeatable")


def run_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """(top-level overrides, dotted overrides) of the options `add_run_arguments` defines."""
    keys = ("output_dir", "max_steps", "num_epochs", "per_device_batch_size", "seed", "num_workers",
            "gradient_accumulation_steps", "mixed_precision", "checkpointing_steps", "eval_steps", "report_to",
            "push_to_hub")
    dotted = list(args.set)
    if args.learning_rate is not None:
        dotted.append(f"optimization.learning_rate={args.learning_rate}")
    return {key: getattr(args, key) for key in keys}, dotted


def reproduce_command(script: str, argv: list[str]) -> str:
    """The command that reproduces a run: resuming does not change the result, so it is left out."""
    words = list(argv)
    if "--resume-from-checkpoint" in words:
        at = words.index("--resume-from-checkpoint")
        del words[at:at + 2]
    return f"accelerate launch {script} " + " ".join(shlex.quote(word) for word in words)
