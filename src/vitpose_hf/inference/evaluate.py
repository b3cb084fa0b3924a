"""`vitpose-hf evaluate`: the evaluation of a finished model, as the original scores it (COCO AP with flip test,
rescoring and OKS-NMS in detector boxes, or PCKh), on one process or split over `accelerate launch` processes.

The work is `vitpose_hf.evaluation.evaluate_keypoint_dataset` with a `process_state`: each process predicts its share
of the images, the results are gathered in sample order, so N processes score exactly as one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..evaluation.dataset import evaluate_keypoint_dataset
from ..evaluation.distributed import is_main_process, num_processes
from .sharded import launched_process_state, process_device


def load_model_and_processor(model: str | None) -> tuple[Any, Any, str]:
    """(VitPoseModel, VitPoseImageProcessor, where they came from) for `model`; the pipeline's default when None."""
    from ..image_processing_vitpose import VitPoseImageProcessor
    from ..modeling_vitpose import VitPoseModel
    from ..pipeline import default_model_path

    source = model if model is not None else default_model_path()
    network = VitPoseModel.from_pretrained(source)
    try:
        processor = VitPoseImageProcessor.from_pretrained(source)
    except OSError:  # a folder with weights only: the processor its config implies
        processor = VitPoseImageProcessor.from_model_config(network.config)
    return network, processor, str(source)


def evaluate_model(
    annotations: str | Path,
    images: str | Path,
    output: str | Path,
    model: str | None = None,
    detections: str | Path | None = None,
    format: str = "coco",
    metric: str = "coco",
    head_boxes: str | Path | None = None,
    flip_test: bool = True,
    batch_size: int = 32,
    dataset: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on an annotation file and write `output` (JSON, main process); returns what was written.

    `dataset` names the head of a multi-dataset model (default the first). Under `accelerate launch` every process
    runs this with the same arguments.
    """
    import torch

    state = launched_process_state()
    network, processor, source = load_model_and_processor(model)
    device = device or process_device(state) or ("cuda" if torch.cuda.is_available() else "cpu")
    network.to(device)
    metrics = evaluate_keypoint_dataset(
        network, processor, annotations, images, dataset_index=dataset if dataset is not None else 0,
        detections=detections, flip_test=flip_test, batch_size=batch_size, metric=metric, format=format,
        head_boxes=head_boxes, device=device, process_state=state,
    )
    report = {"model": source, "annotations": str(annotations), "images": str(images),
              "detections": None if detections is None else str(detections), "format": format, "metric": metric,
              "flip_test": flip_test, "metrics": metrics}
    if is_main_process(state):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(report, indent=2) + "\n")
    return {**report, "output": str(output), "num_processes": num_processes(state),
            "main_process": is_main_process(state)}
