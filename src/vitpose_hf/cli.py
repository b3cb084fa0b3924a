"""The `vitpose-hf` command.

    vitpose-hf predict street.jpg park.png --detector facebook/detr-resnet-50 --output-dir out/
    vitpose-hf predict val/*.jpg --boxes person_detections.json --coco-results
    vitpose-hf demo                     # the bundled picture, the embedded model, no network
    vitpose-hf export my-model/ --format onnx --output-dir my-model-onnx/

`predict` writes, per image, `<name>.png` (skeletons drawn) and `<name>.json` (the pipeline's people); with
`--coco-results` also `coco_results.json` in the COCO keypoint results format. `demo` does the same for the bundled
picture and its boxes, into `demo_output/`. `--dtype auto` (the default) runs bf16 where the hardware computes it
natively (GPUs, CPUs with AVX512-BF16/AMX), fp32 elsewhere. `export` writes one head of a model as model.onnx with its
image processor.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEMO_IMAGE = ASSETS_DIR / "demo.jpg"
DEMO_BOXES = ASSETS_DIR / "demo_boxes.json"
DTYPE_CHOICES = ["auto", "fp32", "bf16", "fp16"]
DTYPE_HELP = "precision of the model: auto (default) is bf16 where the hardware computes it natively, else fp32"


def load_boxes_file(path: str | Path, images: Sequence[str]) -> list[list]:
    """Per-image box lists from a JSON file, in the order of `images`.

    Accepted layouts: a list with one box list per image; a mapping from image path (as given, or its file name) to
    its box list; or COCO detection results `[{"image_id", "bbox", "score", "category_id"}, ...]`, matched to images
    whose file name is their numeric id (000000000139.jpg), keeping category 1 (person); their scores are kept.
    Images without an entry get no boxes (an empty list).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read boxes file {path}: {error}") from error
    if isinstance(data, dict):
        unknown = set(data) - set(images) - {Path(image).name for image in images}
        if unknown:
            raise ValueError(f"Boxes file {path} names images that were not given: {sorted(unknown)[:5]}")
        return [data.get(image, data.get(Path(image).name, [])) for image in images]
    if not isinstance(data, list):
        raise ValueError(f"Boxes file {path} must hold a list or a mapping, got {type(data).__name__}.")
    if data and isinstance(data[0], dict):
        return _coco_detections_per_image(data, images, path)
    if len(data) != len(images):
        raise ValueError(f"Boxes file {path} has {len(data)} box lists for {len(images)} images.")
    return data


def _coco_detections_per_image(detections: list[dict], images: Sequence[str], path: Path) -> list[list]:
    ids = [coco_image_id(image, None) for image in images]
    per_image: dict[int, list] = {image_id: [] for image_id in ids if image_id is not None}
    for index, detection in enumerate(detections):
        missing = {"image_id", "bbox"} - set(detection)
        if missing:
            raise ValueError(f"Detection {index} in {path} lacks {sorted(missing)}.")
        if detection.get("category_id", 1) != 1 or detection["image_id"] not in per_image:
            continue
        per_image[detection["image_id"]].append(list(detection["bbox"]) + [float(detection.get("score", 1.0))])
    return [per_image.get(image_id, []) if image_id is not None else [] for image_id in ids]


def coco_image_id(image: str, default: int | None) -> int | None:
    """COCO image id from a file name such as 000000000139.jpg; `default` when the name is not a number."""
    stem = Path(image).stem
    return int(stem) if stem.isdigit() else default


def coco_results(people: list[dict], image_id: int) -> list[dict]:
    """People of one image as COCO keypoint results; a person's score is box_score times its mean keypoint score."""
    results = []
    for person in people:
        keypoints = np.asarray(person["keypoints"], dtype=np.float64)
        scores = np.asarray(person["scores"], dtype=np.float64)
        triplets = np.concatenate([keypoints, scores[:, None]], axis=1).reshape(-1)
        results.append({
            "image_id": image_id,
            "category_id": 1,
            "keypoints": [round(float(v), 3) for v in triplets],
            "score": float(person["box_score"] * scores.mean()) if len(scores) else 0.0,
        })
    return results


def _output_stems(images: Sequence[str]) -> list[str]:
    """File names for the outputs: the images' stems, numbered where two images share one."""
    stems, seen = [], {}
    for image in images:
        stem = Path(image).stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem] - 1}")
    return stems


def build_pipeline(model: str | None, device: str | None, batch_size: int, dtype: str = "auto"):
    """The keypoint-detection pipeline of `model` (the embedded default when None), in `dtype` ("auto": the
    hardware's fastest native one)."""
    import torch
    from transformers import pipeline

    import vitpose_hf  # noqa: F401  (registers the task)
    from vitpose_hf.inference_optimization import resolve_dtype
    from vitpose_hf.pipeline import KeypointDetectionPipeline, default_model_path

    run_device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    # pipeline_class: a folder written by pipe.save_pretrained loads with the installed code, no trust_remote_code.
    return pipeline(
        "keypoint-detection", model=model if model is not None else default_model_path(), device=device,
        batch_size=batch_size, pipeline_class=KeypointDetectionPipeline, dtype=resolve_dtype(dtype, run_device),
    )


def results_json(image: str, width: int, height: int, people: list[dict]) -> str:
    """The JSON written per image: coordinates rounded to 0.01 pixel, one person per line."""
    rounded = []
    for person in people:
        rounded.append({
            "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in person["keypoints"]],
            "scores": [round(float(v), 4) for v in person["scores"]],
            "labels": list(person["labels"]),
            "bbox": [round(float(v), 2) for v in person["bbox"]],
            "box_score": round(float(person["box_score"]), 4),
        })
    head = json.dumps({"image": image, "width": width, "height": height})[:-1]
    lines = ",\n  ".join(json.dumps(person) for person in rounded)
    return f'{head}, "people": [\n  {lines}\n]}}\n' if rounded else f'{head}, "people": []}}\n'



def predict(
    images: Sequence[str], output_dir: str | Path, model: str | None = None, boxes: list | None = None,
    box_format: str = "xywh", detector: str | None = None, detector_threshold: float = 0.5, flip_test: bool = True,
    dataset: str | None = None, draw_threshold: float = 0.3, write_coco_results: bool = False,
    device: str | None = None, batch_size: int = 8, pose: Any = None, dtype: str = "auto",
) -> list[dict]:
    """Run the pipeline on `images` and write an annotated PNG and a JSON per image; returns what it wrote."""
    from .pipeline import load_pose_image
    from .visualization import draw_pose

    pose = pose if pose is not None else build_pipeline(model, device, batch_size, dtype)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if boxes is not None and len(boxes) != len(images):
        raise ValueError(f"Got {len(boxes)} box lists for {len(images)} images.")
    written, all_results = [], []
    for index, (image_path, stem) in enumerate(zip(images, _output_stems(images))):
        image = load_pose_image(image_path, index)
        people = pose(
            image, boxes=None if boxes is None else boxes[index], box_format=box_format,
            detector=None if boxes is not None else detector, detector_threshold=detector_threshold,
            flip_test=flip_test, dataset=dataset,
        )
        drawn = draw_pose(image, people, pose.model.config, threshold=draw_threshold, dataset=dataset)
        png, record = output_dir / f"{stem}.png", output_dir / f"{stem}.json"
        drawn.save(png)
        record.write_text(results_json(str(image_path), image.width, image.height, people))
        written.append({"image": str(image_path), "png": str(png), "json": str(record), "people": len(people),
                        "model": pose.model.name_or_path})
        if write_coco_results:
            all_results.extend(coco_results(people, coco_image_id(str(image_path), index)))
    if write_coco_results:
        coco_file = output_dir / "coco_results.json"
        coco_file.write_text(json.dumps(all_results))
        written.append({"coco_results": str(coco_file), "people": len(all_results)})
    return written


def demo(
    output_dir: str | Path = "demo_output", model: str | None = None, device: str | None = None, dtype: str = "auto",
) -> list[dict]:
    """The whole pipeline on the bundled picture of synthetic figures, with its boxes, offline."""
    boxes = json.loads(DEMO_BOXES.read_text())
    return predict(
        [str(DEMO_IMAGE)], output_dir, model=model, boxes=[boxes["boxes"]], box_format=boxes.get("box_format", "xywh"),
        device=device, dtype=dtype,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitpose-hf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("predict", help="pose estimation on images: annotated PNG + JSON per image")
    run.add_argument("images", nargs="+", help="image files (or URLs)")
    run.add_argument("--model", default=None, help="model id or folder (default: the model embedded in the package)")
    run.add_argument("--boxes", default=None, help="JSON file of person boxes (see vitpose_hf.cli.load_boxes_file)")
    run.add_argument("--box-format", default="xywh", choices=["xywh", "xyxy"])
    run.add_argument("--detector", default=None, help="object-detection model id or folder whose persons become boxes")
    run.add_argument("--detector-threshold", type=float, default=0.5)
    run.add_argument("--dataset", default=None, help="keypoint head of a multi-dataset model (default: the first)")
    run.add_argument("--output-dir", default="vitpose_output")
    run.add_argument("--no-flip", action="store_true", help="skip the flip test (twice as fast, slightly less exact)")
    run.add_argument("--coco-results", action="store_true", help="also write coco_results.json")
    run.add_argument("--draw-threshold", type=float, default=0.3, help="joints scoring less are not drawn")
    run.add_argument("--batch-size", type=int, default=8, help="crops per forward")
    run.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: the first accelerator, else cpu)")
    run.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)

    show = commands.add_parser("demo", help="the bundled picture with the embedded model, offline")
    show.add_argument("--output-dir", default="demo_output")
    show.add_argument("--model", default=None, help="another model to run instead of the embedded one")
    show.add_argument("--device", default=None)
    show.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)

    export = commands.add_parser("export", help="one head of a model as model.onnx (dynamic batch) + its processor")
    export.add_argument("folder", help="model folder (save_pretrained)")
    export.add_argument("--format", default="onnx", choices=["onnx"])
    export.add_argument("--dataset", default=None, help="the head to export (default: the first)")
    export.add_argument("--output-dir", required=True)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"vitpose-hf: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # weight-loading bars would drown the few lines printed here
    with warnings.catch_warnings():  # restores the warning display afterwards
        warnings.showwarning = _show_warning
        try:
            written = _run(args)
        except (FileNotFoundError, ValueError, TypeError) as error:
            print(f"vitpose-hf {args.command}: error: {error}", file=sys.stderr)
            return 2
    if written and "model" in written[0]:
        print(f"model: {written[0]['model']}")
    for entry in written:
        if "coco_results" in entry:
            print(f"{entry['coco_results']}: {entry['people']} people in COCO results format")
        else:
            print(f"{entry['image']}: {entry['people']} people -> {entry['png']}, {entry['json']}")
    return 0


def _run(args: argparse.Namespace) -> list[dict]:
    if args.command == "demo":
        return demo(args.output_dir, model=args.model, device=args.device, dtype=args.dtype)
    if args.command == "export":
        from .convert.export import export_onnx

        path = export_onnx(args.folder, args.output_dir, dataset=args.dataset)
        print(f"{args.folder} -> {path}")
        return []
    boxes = load_boxes_file(args.boxes, args.images) if args.boxes else None
    return predict(
        args.images, args.output_dir, model=args.model, boxes=boxes, box_format=args.box_format,
        detector=args.detector, detector_threshold=args.detector_threshold, flip_test=not args.no_flip,
        dataset=args.dataset, draw_threshold=args.draw_threshold, write_coco_results=args.coco_results,
        device=args.device, batch_size=args.batch_size, dtype=args.dtype,
    )


if __name__ == "__main__":
    raise SystemExit(main())
