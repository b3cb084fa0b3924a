"""The training configuration: one YAML file, checked in full before anything runs.

    model:           which ViTPose to build and where its weights start from
    datasets:        one entry per keypoint dataset (each gets its own head), with its validation split
    optimization:    the recipe: AdamW, layer-wise lr decay, warmup then step decay, clipping, freezing
    augmentation:    `TopDownAugmentation` arguments (the recipe's defaults when left out)
    distillation:    optional teacher (see `vitpose_hf.training.distillation`)
    everything else: the run (output dir, steps, batch size, precision, checkpoints, evaluation, logging)

A file may start from another: `base: ../base/coco_topdown.yaml` (relative to the including file) is read first and
the file's own keys are merged over it, section by section. Unknown keys are errors that name the key
(`optimization.lerning_rate`), values are typed by the schema (`1e-5` is a number, as in YAML 1.2) and range-checked,
and dataset files are checked before the model is built, so a typo never costs a training run.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import re
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
class HFDatasetSection:
    """A keypoint dataset of the `datasets` library (`vitpose_hf.data.hf_datasets`): one row per person with its
    picture, trained through the same augmentation and mixing as annotation files and evaluated from its rows.

    Args:
        path: a Hub dataset id, a local dataset folder, parquet/arrow shards (a file, a glob or a folder), or a
            builder name ("parquet", "arrow") with `data_files`.
        data_files: `datasets.load_dataset` data_files, e.g. {"train": "shards/train-*.parquet",
            "validation": "shards/val-*.parquet"}.
        config_name: the Hub dataset's configuration (`load_dataset(path, name)`), if it has several.
        train_split, validation_split: the splits to train and to evaluate on (null: no evaluation).
        columns: field -> column for columns not named as `DEFAULT_COLUMNS` (e.g. {"keypoints": "joints"}).
        streaming: read the rows as they are needed (datasets that do not fit on disk). Every dataset of a run is
            streamed or none is. A streamed run needs `samples_per_epoch` (draws per epoch; the stream must hold
            them), mixes equal shares when `probability` is left out (the size is unknown) and resumes by
            replaying the interrupted epoch's stream up to the step. Not streamed: mixed and resumed exactly as
            annotation files.
        shuffle_buffer: rows held for shuffling a streamed dataset (0: stored order); with several streamed
            datasets, the largest value applies to all.
    """

    path: str = ""
    data_files: dict[str, Any] | None = None
    config_name: str | None = None
    train_split: str = "train"
    validation_split: str | None = "validation"
    columns: dict[str, str] = field(default_factory=dict)
    streaming: bool = False
    shuffle_buffer: int = 1000

    def load_kwargs(self) -> dict[str, Any]:
        """The extra `datasets.load_dataset` arguments of the section."""
        kwargs: dict[str, Any] = {}
        if self.data_files is not None:
            kwargs["data_files"] = self.data_files
        if self.config_name is not None:
            kwargs["name"] = self.config_name
        return kwargs


@dataclass
class DatasetSection:
    """Args:
        name: the dataset's head name (also the key of its metrics in eval_results.json).
        layout: a registered keypoint layout name, or a dict declaring a custom one (`KeypointLayout` fields).
        annotation_file, image_root: training annotations (COCO json; `format` mpii or aic for those) and images.
        hf_dataset: instead of annotation_file/image_root (and of val_annotation_file/val_image_root): a dataset
            of the `datasets` library, its train and validation splits (`HFDatasetSection`).
        format: "coco", "mpii" or "aic".
        probability: share of the training draws; left out for every dataset: proportional to size (the original).
        val_annotation_file, val_image_root: the validation split (COCO-format json).
        val_detections: a COCO detection-results file: evaluate on detector boxes (rescoring and OKS-NMS).
        metric: "coco" (keypoint AP with the layout's OKS sigmas) or "pckh" (MPII; needs `val_head_boxes`).
        val_head_boxes: MPII head boxes of the validation people (see `vitpose_hf.evaluation.load_head_boxes`).
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
    val_head_boxes: str | None = None
    metric: str = "coco"
    synthetic: SyntheticSection | None = None
    val_synthetic: SyntheticSection | None = None
    hf_dataset: HFDatasetSection | None = None

    def has_validation(self) -> bool:
        """Whether the dataset has a validation split to evaluate on."""
        if self.hf_dataset is not None:
            return self.hf_dataset.validation_split is not None
        return bool(self.val_annotation_file)

    def source(self) -> str:
        """Where the training data comes from, for messages and model cards."""
        return self.hf_dataset.path if self.hf_dataset is not None else self.annotation_file


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

    def validate_run(self) -> None:
        """The run keys and dataset sections: every value a run would trip over later, named by its key."""
        if not self.datasets:
            raise ConfigError("datasets: give at least one training dataset.")
        for i, dataset in enumerate(self.datasets):
            _validate_dataset(dataset, f"datasets[{i}]")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigError(f"datasets: names must be unique, got {names}.")
        probabilities = [d.probability for d in self.datasets]
        if any(p is None for p in probabilities) and any(p is not None for p in probabilities):
            raise ConfigError("datasets: give `probability` for every dataset or for none (then: proportional to size).")
        streamed = [d.name for d in self.datasets if d.hf_dataset is not None and d.hf_dataset.streaming]
        if streamed and len(streamed) != len(self.datasets):
            raise ConfigError(f"datasets: {streamed} are streamed and the others are not; stream every dataset or none.")
        if streamed and self.samples_per_epoch is None:
            raise ConfigError("samples_per_epoch is required with streamed datasets (their length is not known).")
        if self.num_epochs is None and self.max_steps is None:
            raise ConfigError("Give num_epochs or max_steps (max_steps wins when both are given).")
        for key in ("num_epochs", "max_steps"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}: a run of 0 steps would write an "
                                  "untrained final/.")
        for key in ("per_device_batch_size", "gradient_accumulation_steps", "logging_steps"):
            _at_least(self, key, 1)
        for key in ("samples_per_epoch", "checkpointing_steps", "eval_steps"):
            if getattr(self, key) is not None:
                _at_least(self, key, 1, " (or null)")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ConfigError(f"checkpoints_total_limit must be >= 1, or null to keep every checkpoint; got "
                              f"{self.checkpoints_total_limit}.")
        _at_least(self, "num_workers", 0)
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}.")
        _validate_augmentation(self.augmentation)

    def check_paths(self) -> None:
        """Every file the run reads exists (synthetic datasets excepted: they are generated when missing)."""
        for i, dataset in enumerate(self.datasets):
            if dataset.hf_dataset is not None:
                continue  # read (columns checked) before step 0 by `training.data.check_validation_files`
            checks = [("annotation_file", dataset.annotation_file, dataset.synthetic),
                      ("image_root", dataset.image_root, dataset.synthetic),
                      ("val_annotation_file", dataset.val_annotation_file, dataset.val_synthetic),
                      ("val_image_root", dataset.val_image_root, dataset.val_synthetic),
                      ("val_detections", dataset.val_detections, None),
                      ("val_head_boxes", dataset.val_head_boxes, None)]
            for key, path, generated in checks:
                if path and generated is None and not Path(path).exists():
                    raise ConfigError(f"datasets[{i}].{key} of dataset {dataset.name!r} does not exist: {path}")
        init = getattr(getattr(self, "model", None), "init_from", None)
        if init and (init.endswith(".pth") or init.endswith(".pt")) and not Path(init).exists():
            raise ConfigError(f"model.init_from does not exist: {init}")


def _at_least(section: Any, key: str, minimum: float, note: str = "", where: str = "") -> None:
    value = getattr(section, key)
    if value < minimum:
        raise ConfigError(f"{where}{key} must be >= {minimum}{note}, got {value}.")


def _validate_dataset(dataset: DatasetSection, where: str) -> None:
    if not dataset.name:
        raise ConfigError(f"{where}.name is missing.")
    if dataset.hf_dataset is not None:
        _validate_hf_dataset(dataset, where)
    elif not dataset.annotation_file or not dataset.image_root:
        raise ConfigError(f"{where} ({dataset.name}): annotation_file and image_root (or hf_dataset) are required.")
    if dataset.format not in ("coco", "mpii", "aic"):
        raise ConfigError(f"{where}.format must be coco, mpii or aic, got {dataset.format!r}.")
    if dataset.metric not in ("coco", "pckh"):
        raise ConfigError(f"{where}.metric must be coco or pckh, got {dataset.metric!r}.")
    if bool(dataset.val_annotation_file) != bool(dataset.val_image_root):
        raise ConfigError(f"{where} ({dataset.name}): give both val_annotation_file and val_image_root.")
    if dataset.probability is not None and not dataset.probability > 0:
        raise ConfigError(f"{where}.probability must be > 0, got {dataset.probability}.")
    if dataset.metric == "pckh" and dataset.has_validation():
        if not dataset.val_head_boxes:
            raise ConfigError(f"{where}.metric is pckh but {where}.val_head_boxes is not given: PCKh needs the head "
                              "boxes of the validation people.")
        if dataset.val_detections:
            raise ConfigError(f"{where}: metric pckh is measured on ground-truth boxes; remove {where}.val_detections.")


def _validate_hf_dataset(dataset: DatasetSection, where: str) -> None:
    from ..data.hf_datasets import DEFAULT_COLUMNS

    hf = dataset.hf_dataset
    files = [key for key in ("annotation_file", "image_root", "val_annotation_file", "val_image_root", "synthetic",
                             "val_synthetic") if getattr(dataset, key)]
    if files:
        raise ConfigError(f"{where} ({dataset.name}): hf_dataset replaces {files}; give one or the other.")
    if not hf.path:
        raise ConfigError(f"{where}.hf_dataset.path is missing.")
    unknown = sorted(set(hf.columns) - set(DEFAULT_COLUMNS))
    if unknown:
        raise ConfigError(f"Unknown field {where}.hf_dataset.columns.{unknown[0]}; known fields: "
                          f"{', '.join(DEFAULT_COLUMNS)}.")
    _at_least(hf, "shuffle_buffer", 0, where=f"{where}.hf_dataset.")
    if dataset.format != "coco":
        raise ConfigError(f"{where}.format: rows of hf_dataset are COCO-style; remove format {dataset.format!r}.")


# Keys of `TopDownAugmentation` the run sets itself.
_RUN_AUGMENTATION_KEYS = {"self", "layout", "input_size", "heatmap_size", "train", "seed"}


def _validate_augmentation(augmentation: dict[str, Any]) -> None:
    """Known `TopDownAugmentation` arguments only, probabilities in [0, 1], no negative magnitude."""
    from ..data.transforms import TopDownAugmentation

    known = set(inspect.signature(TopDownAugmentation.__init__).parameters) - _RUN_AUGMENTATION_KEYS
    for key, value in augmentation.items():
        if key not in known:
            raise ConfigError(f"Unknown config key augmentation.{key}{_did_you_mean(key, known)}.")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key.endswith("_prob") and not 0.0 <= value <= 1.0:
            raise ConfigError(f"augmentation.{key} is a probability and must lie in [0, 1], got {value}.")
        if value < 0:
            raise ConfigError(f"augmentation.{key} must be >= 0, got {value}.")


def _did_you_mean(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(sorted(known))})"


def check_config_overrides(overrides: dict[str, Any], where: str = "model.config_overrides") -> None:
    """`VitPoseConfig` silently keeps unknown keyword arguments: a typo there would build the default model."""
    from ..configuration_vitpose import VitPoseConfig

    known = {f.name for f in dataclasses.fields(VitPoseConfig) if not f.name.startswith("_")}
    known |= {"out_features", "out_indices"}
    for key in overrides:
        if key not in known:
            raise ConfigError(f"Unknown config key {where}.{key}: not a VitPoseConfig field{_did_you_mean(key, known)}.")


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
        self.validate_run()
        _at_least(self, "eval_batch_size", 1)
        check_config_overrides(self.model.config_overrides)
        opt = self.optimization
        if opt.lr_decay_unit not in ("epochs", "steps"):
            raise ConfigError(f"optimization.lr_decay_unit must be epochs or steps, got {opt.lr_decay_unit!r}.")
        if opt.freeze not in ("none", "attention", "ffn", "backbone"):
            raise ConfigError(f"optimization.freeze must be none, attention, ffn or backbone, got {opt.freeze!r}.")
        if not opt.learning_rate > 0:
            raise ConfigError(f"optimization.learning_rate must be > 0, got {opt.learning_rate}.")
        for key in ("weight_decay", "warmup_steps"):
            _at_least(opt, key, 0, where="optimization.")
        if not 0.0 <= opt.warmup_ratio <= 1.0:
            raise ConfigError(f"optimization.warmup_ratio must lie in [0, 1], got {opt.warmup_ratio}.")
        if opt.layer_decay_rate is not None and not 0.0 < opt.layer_decay_rate <= 1.0:
            raise ConfigError(f"optimization.layer_decay_rate must lie in (0, 1], got {opt.layer_decay_rate}.")
        if opt.max_grad_norm is not None and not opt.max_grad_norm > 0:
            raise ConfigError(f"optimization.max_grad_norm must be > 0 (or null), got {opt.max_grad_norm}.")
        if not opt.lr_decay_gamma > 0:
            raise ConfigError(f"optimization.lr_decay_gamma must be > 0, got {opt.lr_decay_gamma}.")
        check_betas(opt.betas)
        if any(m < 0 for m in opt.lr_decay_milestones):
            raise ConfigError(f"optimization.lr_decay_milestones must be >= 0, got {opt.lr_decay_milestones}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_betas(betas: list[float]) -> None:
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(f"optimization.betas must be two values in [0, 1), got {betas}.")


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
        raise ConfigError(f"Unknown config key {prefix}{unknown[0]}{_did_you_mean(unknown[0], known)}.")
    values = {}
    for key, value in data.items():
        values[key] = _convert(hints[key], value, f"{where}.{key}" if where else key)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where or 'config'}: {error}") from error


# YAML 1.2 core-schema numbers: PyYAML reads YAML 1.1, where "1e-5" (no dot) is a string.
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def yaml12_number(text: str) -> int | float | None:
    """The number a YAML 1.2 reader sees in `text`, or None when it is not one."""
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text.lower() in (".inf", "+.inf", "-.inf", ".nan"):
        return float(text.replace(".", "", 1))
    return None


def _convert(hint: Any, value: Any, where: str) -> Any:
    """`value` as the schema's type: sections become dataclasses (lists of them item by item), numbers are typed
    (a YAML 1.1 string "1e-5" where a float goes is 1e-05), and a value of the wrong type is an error naming `where`."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if union else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return _build(option, value, where)
        if typing.get_origin(option) is list and isinstance(value, list):
            (item,) = typing.get_args(option) or (Any,)
            return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    scalars = [option for option in options if option in (bool, int, float, str)]
    if isinstance(value, (dict, list)) or Any in options or not scalars or any(isinstance(value, option) and not (option is int and isinstance(value, bool))
                          for option in scalars if option is not float):
        return value  # Any, dicts, or already of an accepted scalar type
    number = yaml12_number(value) if isinstance(value, str) else value
    if float in scalars and isinstance(number, (int, float)) and not isinstance(number, bool):
        return float(number)
    if int in scalars and isinstance(number, (int, float)) and not isinstance(number, bool) and float(number).is_integer():
        return int(number)
    expected = " or ".join(option.__name__ for option in scalars) + (" or null" if type(None) in options else "")
    raise ConfigError(f"{where} must be {expected}, got {value!r}.")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`optimization.learning_rate=1e-3` -> (["optimization", "learning_rate"], 0.001); the value is read as YAML,
    numbers as YAML 1.2 does (so "1e-05" is a number wherever it goes, `model.config_overrides` included)."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key.subkey=value.")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw)
    if isinstance(value, str) and yaml12_number(value) is not None:
        value = yaml12_number(value)
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, path)]
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"Override {'.'.join(path)}: {'.'.join(path[:i + 1])} is not a section.")
    if isinstance(node, list):
        node[_list_index(node, path[-1], path)] = value
    else:
        node[path[-1]] = value


def _list_index(node: list, part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"Override {'.'.join(path)}: {part!r} is not an index of a list of {len(node)}.")
    return int(part)


def read_config_file(path: str | Path, _including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The keys of a YAML config, with its `base:` file (relative to it) read first and merged under it.

    Sections merge recursively, the including file's values win; lists are replaced whole. A file that includes
    itself, directly or not, is an error naming the chain."""
    path = Path(path)
    if not path.is_file():
        where = f" (the base of {_including[-1]})" if _including else ""
        raise ConfigError(f"Config file not found: {path}{where}")
    resolved = path.resolve()
    if resolved in _including:
        chain = " -> ".join(str(p) for p in (*_including, resolved))
        raise ConfigError(f"Config files include each other in a cycle: {chain}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys.")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a file path, got {base!r}.")
    return merge_config(read_config_file(path.parent / base, (*_including, resolved)), data)


def merge_config(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` over `base`: mappings merged key by key, anything else (lists included) replaced."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    cls: type, path: str | Path | None = None, overrides: dict[str, Any] | None = None,
    dotted: list[str] | None = None,
) -> Any:
    """Read a YAML file (and its `base:` chain) into the dataclass `cls`, apply `overrides` (top-level keys, None
    ignored) and `dotted` overrides ("a.b=value"), and validate; unknown keys are errors naming them."""
    data: dict[str, Any] = read_config_file(path) if path is not None else {}
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
    parser.add_argument("--overwrite-output-dir", action="store_true",
                        help="start afresh in an output directory that holds an earlier run")
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
