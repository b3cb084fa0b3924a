"""Export a ViTPose model to a traced graph: `torch.export` programs and ONNX files, with a dynamic batch.

    program = export_program(model, dataset="coco")          # torch.export.ExportedProgram
    path = export_onnx("my-model/", "onnx/", dataset="coco")   # onnx/model.onnx + preprocessor_config.json + config.json

A traced graph cannot group a batch by dataset, so it serves one head (and its ViTPose+ expert): `dataset` picks it,
the first head by default as in the eager forward. The graph takes `pixel_values` (batch, 3, H, W) at the model's
input size and returns `heatmaps` (batch, K, H/4, W/4); the image processor written beside it crops and decodes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..image_processing_vitpose import VitPoseImageProcessor
from ..modeling_vitpose import VitPoseModel

ONNX_FILE = "model.onnx"
# Above this many bytes of weights ONNX's 2 GB protobuf limit needs them in a side file (model.onnx.data).
EXTERNAL_DATA_BYTES = 1_800_000_000


class HeatmapsModule(nn.Module):
    """`model(pixel_values).heatmaps` as a plain tensor-in, tensor-out module, which exporters need."""

    def __init__(self, model: VitPoseModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).heatmaps


@contextlib.contextmanager
def traced_head(model: VitPoseModel, dataset: int | str | None) -> Iterator[VitPoseModel]:
    """`model` set to serve the head of `dataset` (default the first) while traced; restored afterwards."""
    previous = model.traced_dataset_index
    model.traced_dataset_index = 0 if dataset is None else dataset
    try:
        model.traced_head_index()  # an unknown head fails here, before any tracing
        yield model
    finally:
        model.traced_dataset_index = previous


def example_inputs(model: VitPoseModel, batch_size: int = 2) -> torch.Tensor:
    """Random pixels at the model's input size; batch 2, since an example batch of 1 would be specialised."""
    height, width = model.config.image_size
    parameter = next(model.parameters())
    return torch.randn(batch_size, model.config.num_channels, height, width, device=parameter.device,
                       dtype=parameter.dtype)


def _dynamic_batch() -> dict:
    return {"pixel_values": {0: torch.export.Dim("batch", min=1, max=4096)}}


def export_program(model: VitPoseModel, dataset: int | str | None = None) -> torch.export.ExportedProgram:
    """`torch.export` of `model`'s heatmaps for one head, with a dynamic batch dimension."""
    model = model.eval()
    with traced_head(model, dataset):
        return torch.export.export(
            HeatmapsModule(model).eval(), (example_inputs(model),), dynamic_shapes=_dynamic_batch()
        )


def load_for_export(model_or_folder: VitPoseModel | str | os.PathLike) -> tuple[VitPoseModel, VitPoseImageProcessor]:
    """The model (fp32, eval, CPU when loaded from a folder) and its image processor."""
    if isinstance(model_or_folder, VitPoseModel):
        model = model_or_folder
        processor = VitPoseImageProcessor.from_model_config(model.config)
    elif isinstance(model_or_folder, (str, os.PathLike)):
        folder = Path(model_or_folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"No model to export in {folder}: it has no config.json.")
        model = VitPoseModel.from_pretrained(folder)
        if (folder / "preprocessor_config.json").is_file():
            processor = VitPoseImageProcessor.from_pretrained(folder)
        else:
            processor = VitPoseImageProcessor.from_model_config(model.config)
    else:
        raise TypeError(f"Expected a VitPoseModel or a model folder, got {type(model_or_folder).__name__}.")
    return model.eval(), processor


def export_onnx(
    model_or_folder: VitPoseModel | str | os.PathLike, output_dir: str | os.PathLike, dataset: int | str | None = None,
    opset_version: int | None = None,
) -> Path:
    """Write `output_dir/model.onnx` (input `pixel_values`, output `heatmaps`, dynamic batch) for one head, with the
    image processor's `preprocessor_config.json` and the model's `config.json` (keypoint names, skeleton) beside it.

    Returns the path of model.onnx. Uses torch's default (dynamo) ONNX exporter, which needs `onnx` and `onnxscript`.
    """
    model, processor = load_for_export(model_or_folder)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / ONNX_FILE
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with traced_head(model, dataset):
        torch.onnx.export(
            HeatmapsModule(model).eval(), (example_inputs(model),), path, input_names=["pixel_values"],
            output_names=["heatmaps"], dynamic_shapes=_dynamic_batch(), opset_version=opset_version,
            external_data=weight_bytes > EXTERNAL_DATA_BYTES,
        )
    processor.save_pretrained(output_dir)
    model.config.save_pretrained(output_dir)
    return path


__all__ = ["HeatmapsModule", "export_onnx", "export_program", "load_for_export", "traced_head"]
