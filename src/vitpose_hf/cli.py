"""The `vitpose-hf` command.

    vitpose-hf predict street.jpg park.png --detector facebook/detr-resnet-50 --output-dir out/
    vitpose-hf predict val/*.jpg --boxes person_detections.json --coco-results
    vitpose-hf demo                     # the bundled picture, the embedded model, no network
    vitpose-hf evaluate --annotations val.json --images val/ --output results.json
    vitpose-hf export my-model/ --format onnx --output-dir my-model-onnx/

`predict` writes, per image, `<name>.png` (skeletons drawn) and `<name>.json` (the pipeline's people), each as soon
as that image is done; with `--coco-results` also `coco_results.json` in the COCO keypoint results format. A video
(.mp4, .avi, .mov, .mkv, .webm) gets `<name>.mp4` (every frame, skeletons and track ids drawn) and `<name>.jsonl`
(one frame per line, people with a `track_id`); see `vitpose_hf.video`. Without `--model` it runs ViTPose-B from the
Hub when cached or reachable, else the embedded model (see vitpose_hf.defaults). `demo` does the same for the bundled
picture and its boxes with the embedded model, into `demo_output/`. `--dtype auto` (the default) runs bf16 where the
hardware computes it natively (GPUs, CPUs with AVX512-BF16/AMX), fp32 elsewhere. `export` writes one head of a model
as model.onnx with its image processor.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__

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
    from .evaluation.detections import load_detection_boxes

    ids = [coco_image_id(image, None) for image in images]
    per_image: dict[int, list] = {image_id: [] for image_id in ids if image_id is not None}
    for sample in load_detection_boxes(detections, source=str(path)):
        if sample["image_id"] in per_image:
            per_image[sample["image_id"]].append(sample["bbox"] + [sample["score"]])
    return [per_image.get(image_id, []) if image_id is not None else [] for image_id in ids]


def coco_image_id(image: str, default: int | None) -> int | None:
    """COCO image id from a file name such as 000000000139.jpg; `default` when the name is not a number."""
    stem = Path(image).stem
    return int(stem) if stem.isdigit() else default


def coco_results(people: list[dict], image_id: int) -> list[dict]:
    """People of one image as COCO keypoint results, scored as evaluation scores them (`rescore`)."""
    from .boxes import boxes_to_xywh
    from .evaluation.results import coco_keypoint_results

    if not people:
        return []
    keypoints = np.asarray([person["keypoints"] for person in people], dtype=np.float64)
    scores = np.asarray([person["scores"] for person in people], dtype=np.float64)
    boxes = boxes_to_xywh(np.asarray([person["bbox"] for person in people], dtype=np.float64), "xyxy")
    box_scores = [person["box_score"] for person in people]
    return coco_keypoint_results([image_id] * len(people), keypoints, scores, box_scores, boxes)


def _output_stems(images: Sequence[str], reserved: Sequence[str] = ()) -> list[str]:
    """File names for the outputs, one per input path and never shared: the image's stem (unsafe characters
    replaced), numbered where it is taken, compared case-insensitively; d1/x.jpg, d2/x.jpg and x_1.jpg give x, x_1 and
    x_1_1. `reserved` names are never used (e.g. coco_results). Deterministic: the same inputs give the same names."""
    used = {name.lower() for name in reserved}
    stems = []
    for image in images:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(image).split("?")[0]).stem).strip(".") or "image"
        name, number = stem, 0
        while name.lower() in used:
            number += 1
            name = f"{stem}_{number}"
        used.add(name.lower())
        stems.append(name)
    return stems


def _write_into_place(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file beside `path`, renamed over it only once complete: an interrupted or failed
    write (a full disk) never leaves a half-written output."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def check_device(device: str | None) -> str | None:
    """`device` unchanged when this machine has it; else a ValueError naming it (instead of torch's traceback)."""
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"--device {device!r} is not a device name (e.g. cpu, cuda, cuda:0, mps).") from error
    backend = getattr(torch, parsed.type, None) if parsed.type != "cpu" else None
    if backend is not None and hasattr(backend, "is_available") and not backend.is_available():
        raise ValueError(f"--device {device!r}: no {parsed.type} device is available on this machine.")
    count = backend.device_count() if backend is not None and hasattr(backend, "device_count") else None
    if count is not None and parsed.index is not None and parsed.index >= count:
        raise ValueError(f"--device {device!r}: this machine has {count} {parsed.type} device(s).")
    return device


def _check_folder(option: str, source: str) -> None:
    """A value written as a path (not `name` or `org/name`) must be an existing folder."""
    looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or os.sep in source
    if looks_like_path and not os.path.isdir(os.path.expanduser(source)):
        raise ValueError(f"{option} {source!r}: no such folder (nor a Hub model id).")


def build_pipeline(model: str | None, device: str | None, batch_size: int, dtype: str = "auto"):
    """The keypoint-detection pipeline of `model` (when None, the default of vitpose_hf.defaults), in `dtype`
    ("auto": the hardware's fastest native one)."""
    import torch
    from transformers import pipeline

    from .defaults import default_model_path
    from .inference_optimization import resolve_dtype
    from .modeling_vitpose import check_local_checkpoint
    from .pipeline import KeypointDetectionPipeline

    device = check_device(device)
    if model is not None:
        _check_folder("--model", model)
        check_local_checkpoint(model)  # truncated weights named (not a Hub error)
    source = model if model is not None else default_model_path()
    run_device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        # pipeline_class: a folder written by pipe.save_pretrained loads with the installed code, no trust_remote_code.
        return pipeline(
            "keypoint-detection", model=source, device=device, batch_size=batch_size,
            pipeline_class=KeypointDetectionPipeline, dtype=resolve_dtype(dtype, run_device),
        )
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"--model {source!r} cannot be loaded: {_one_line(error)}") from error


def load_detector(detector: str, device: Any):
    """The object-detection pipeline of `detector`, or a ValueError naming it in one line."""
    from .pipeline import resolve_detector

    try:
        return resolve_detector(detector, device)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"--detector {detector!r} cannot be used: {_one_line(error)}") from error


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



def predict(images: Sequence[str], output_dir: str | Path, **options: Any) -> list[dict]:
    """Run the pipeline on `images` and write an annotated PNG and a JSON per image; returns what it wrote.

    Under `accelerate launch` the images are split between the processes (see `vitpose_hf.inference.sharded`);
    the main process returns everything, the others nothing. `options`: those of `iter_predict`.
    """
    return list(iter_predict(images, output_dir, **options))


def iter_predict(
    images: Sequence[str], output_dir: str | Path, model: str | None = None, boxes: list | None = None,
    box_format: str = "xywh", detector: str | None = None, detector_threshold: float = 0.5, flip_test: bool = True,
    dataset: str | None = None, draw_threshold: float = 0.3, write_coco_results: bool = False,
    device: str | None = None, batch_size: int = 8, pose: Any = None, resume: bool = False, dtype: str = "auto",
) -> Iterator[dict]:
    """`predict`, reported image by image: alone, each image's files are written, then reported, before the next one
    starts; under `accelerate launch` the main process reports everything once all processes are done."""
    from .images import load_image
    from .inference.sharded import gather_share, iter_share, launched_process_state, process_device
    from .visualization import draw_pose

    if boxes is not None and len(boxes) != len(images):
        raise ValueError(f"Got {len(boxes)} box lists for {len(images)} images.")
    if isinstance(detector, str):
        _check_folder("--detector", detector)  # before the pose model loads
    state = launched_process_state()
    pose = pose if pose is not None else build_pipeline(model, device or process_device(state), batch_size, dtype)
    if detector is not None and boxes is None:
        detector = load_detector(detector, getattr(pose, "device", None))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stems = _output_stems(images, reserved=["coco_results"] if write_coco_results else [])

    def outputs(index: int) -> tuple[Path, Path]:
        return output_dir / f"{stems[index]}.png", output_dir / f"{stems[index]}.json"

    def entry(index: int, people: list[dict]) -> tuple[dict, list[dict]]:
        png, record = outputs(index)
        return ({"image": str(images[index]), "png": str(png), "json": str(record), "people": len(people),
                 "model": pose.model.name_or_path},
                coco_results(people, coco_image_id(str(images[index]), index)) if write_coco_results else [])

    def reuse(index: int) -> tuple[dict, list[dict]]:  # --resume: a finished image's people, from its JSON
        return entry(index, json.loads(outputs(index)[1].read_text())["people"])

    def run(index: int) -> tuple[dict, list[dict]]:
        image_path = images[index]
        image = load_image(image_path, index)
        people = pose(
            image, boxes=None if boxes is None else boxes[index], box_format=box_format,
            detector=None if boxes is not None else detector, detector_threshold=detector_threshold,
            flip_test=flip_test, dataset=dataset,
        )
        drawn = draw_pose(image, people, pose.model.config, threshold=draw_threshold, dataset=dataset)
        png, record = outputs(index)
        _write_into_place(png, lambda path: drawn.save(path, format="PNG"))
        text = results_json(str(image_path), image.width, image.height, people)
        _write_into_place(record, lambda path: path.write_text(text))
        return entry(index, people)

    share = iter_share(len(images), run, outputs, reuse if resume else None, state)
    if state is None:
        done = (value for _, value in share)  # alone: each image reported as soon as it is written
    else:
        done = gather_share(share, len(images), state)
        if done is None:  # not the main process: the main one reports and writes the merged results
            return
    all_results = []
    for written, results in done:
        all_results += results
        yield written
    if write_coco_results:
        coco_file = output_dir / "coco_results.json"
        _write_into_place(coco_file, lambda path: path.write_text(json.dumps(all_results)))
        yield {"coco_results": str(coco_file), "people": len(all_results)}


def demo(output_dir: str | Path = "demo_output", **options: Any) -> list[dict]:
    """The whole pipeline on the bundled picture of synthetic figures, with its boxes, offline (`options`: those of
    `iter_demo`)."""
    return list(iter_demo(output_dir, **options))


def iter_demo(
    output_dir: str | Path = "demo_output", model: str | None = None, device: str | None = None, dtype: str = "auto",
) -> Iterator[dict]:
    """`demo` as `iter_predict` reports it; the embedded model unless another is named (it knows these figures)."""
    from .defaults import embedded_model_path

    boxes = json.loads(DEMO_BOXES.read_text())
    return iter_predict(
        [str(DEMO_IMAGE)], output_dir, model=model if model is not None else embedded_model_path(),
        boxes=[boxes["boxes"]], box_format=boxes.get("box_format", "xywh"), device=device, dtype=dtype,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitpose-hf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vitpose-hf {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also: VITPOSE_HF_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("predict", help="pose estimation on images: annotated PNG + JSON per image")
    run.add_argument("images", nargs="+", help="image files (or URLs)")
    run.add_argument("--model", default=None, help="model id or folder (default: ViTPose-B from the Hub when cached "
                     "or reachable, else the model embedded in the package)")
    run.add_argument("--boxes", default=None, help="JSON file of person boxes (see vitpose_hf.cli.load_boxes_file)")
    run.add_argument("--box-format", default="xywh", choices=["xywh", "xyxy"])
    run.add_argument("--detector", default=None, help="object-detection model id or folder whose persons become boxes "
                     "(default without --boxes: RT-DETR from the Hub when cached or reachable, else the whole image)")
    run.add_argument("--detector-threshold", type=float, default=0.5)
    run.add_argument("--dataset", default=None, help="keypoint head of a multi-dataset model (default: the first)")
    run.add_argument("--output-dir", default="vitpose_output")
    run.add_argument("--no-flip", action="store_true", help="skip the flip test (twice as fast, slightly less exact)")
    run.add_argument("--coco-results", action="store_true", help="also write coco_results.json")
    run.add_argument("--draw-threshold", type=float, default=0.3, help="joints scoring less are not drawn")
    run.add_argument("--batch-size", type=int, default=8, help="crops per forward")
    run.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: the first accelerator, else cpu)")
    run.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    run.add_argument("--resume", action="store_true", help="skip images whose PNG and JSON are already complete")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--detect-every", type=int, default=1, help="videos: detections on every Nth frame only")
    run.add_argument("--smooth", action="store_true", help="videos: One-Euro smoothing of tracked keypoints")

    score = commands.add_parser("evaluate", help="COCO AP / PCKh of a model on an annotated dataset (flip test)")
    score.add_argument("--model", default=None, help="model id or folder (default: the pipeline's default model)")
    score.add_argument("--annotations", required=True, help="annotation file (COCO keypoints, or see --format)")
    score.add_argument("--images", required=True, help="folder the annotation file's image names are relative to")
    score.add_argument("--detections", default=None, help="COCO detection results: predict in detector boxes, "
                       "rescored, with OKS-NMS (default: the annotated boxes)")
    score.add_argument("--format", default="coco", choices=["coco", "mpii", "aic"])
    score.add_argument("--metric", default="coco", choices=["coco", "pckh"])
    score.add_argument("--head-boxes", default=None, help="MPII head boxes for --metric pckh")
    score.add_argument("--dataset", default=None, help="keypoint head of a multi-dataset model (default: the first)")
    score.add_argument("--no-flip", action="store_true", help="skip the flip test")
    score.add_argument("--batch-size", type=int, default=32, help="crops per forward")
    score.add_argument("--device", default=None, help="default: this process's accelerator, else cpu")
    score.add_argument("--output", required=True, help="where the metrics go (JSON)")

    show = commands.add_parser("demo", help="the bundled picture with the embedded model, offline")
    show.add_argument("--output-dir", default="demo_output")
    show.add_argument("--model", default=None, help="another model to run instead of the embedded one")
    show.add_argument("--device", default=None)
    show.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    show.add_argument("--quiet", action="store_true", help="no progress bar")

    export = commands.add_parser("export", help="one head of a model as model.onnx (dynamic batch) + its processor")
    export.add_argument("folder", help="model folder (save_pretrained)")
    export.add_argument("--format", default="onnx", choices=["onnx"])
    export.add_argument("--dataset", default=None, help="the head to export (default: the first)")
    export.add_argument("--output-dir", required=True)
    return parser


# Failures a user can cause (a missing file, a bad argument or model, a full disk, an unusable --device): one line on
# stderr and exit code 2. --debug or VITPOSE_HF_DEBUG=1 shows the traceback instead.
EXPECTED_ERRORS = (OSError, ValueError, TypeError, RuntimeError)
DEBUG_ENV = "VITPOSE_HF_DEBUG"


def _one_line(error: BaseException) -> str:
    """The error as one line: its first line (transformers' messages may append whole tracebacks)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if isinstance(error, OSError) and error.errno == errno.ENOSPC and "space" not in text.lower():
        text = f"no space left on the device ({text})"
    return text + (f" (... {DEBUG_ENV}=1 or --debug shows the rest)" if len(lines) > 1 else "")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from tqdm import tqdm

    tqdm.write(f"vitpose-hf: warning: {message}", file=sys.stderr)  # above the progress bar, never through it


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tqdm import tqdm
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # weight-loading bars would drown the few lines printed here
    total = len(args.images) if args.command == "predict" else 1
    show_bar = not getattr(args, "quiet", True) and sys.stderr.isatty()  # evaluate shows its own progress
    with warnings.catch_warnings():  # restores the warning display afterwards
        warnings.showwarning = _show_warning
        with tqdm(total=total, unit="image", file=sys.stderr, disable=not show_bar, dynamic_ncols=True) as bar:
            try:
                for number, entry in enumerate(_run(args)):
                    _report(entry, first=number == 0)
                    bar.update("image" in entry)
            except EXPECTED_ERRORS as error:
                if args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                    raise
                bar.close()
                print(f"vitpose-hf {args.command}: error: {_one_line(error)}", file=sys.stderr)
                return 2
    return 0


def _report(entry: dict, first: bool) -> None:
    """One stdout line per written image, as soon as it is written (above the progress bar)."""
    from tqdm import tqdm

    if first and "model" in entry:
        tqdm.write(f"model: {entry['model']}", file=sys.stdout)
    if "coco_results" in entry:
        tqdm.write(f"{entry['coco_results']}: {entry['people']} people in COCO results format", file=sys.stdout)
    elif "output_video" in entry:
        tqdm.write(f"{entry['video']}: {entry['frames']} frames, {entry['tracks']} tracks -> {entry['output_video']}, "
                   f"{entry['jsonl']}", file=sys.stdout)
    else:
        tqdm.write(f"{entry['image']}: {entry['people']} people -> {entry['png']}, {entry['json']}", file=sys.stdout)


def _evaluate(args: argparse.Namespace) -> Iterator[dict]:
    from .inference.evaluate import evaluate_model

    report = evaluate_model(
        args.annotations, args.images, args.output, model=args.model, detections=args.detections, format=args.format,
        metric=args.metric, head_boxes=args.head_boxes, flip_test=not args.no_flip, batch_size=args.batch_size,
        dataset=args.dataset, device=args.device,
    )
    if report["main_process"]:
        print(f"model: {report['model']} ({report['num_processes']} process(es))")
        print(" ".join(f"{name} {value:.4f}" for name, value in report["metrics"].items()))
        print(f"-> {report['output']}")
    return iter(())


def _export(args: argparse.Namespace) -> Iterator[dict]:
    from .convert.export import export_onnx

    path = export_onnx(args.folder, args.output_dir, dataset=args.dataset)
    print(f"{args.folder} -> {path}")
    return iter(())


def _run(args: argparse.Namespace) -> Iterator[dict]:
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "export":
        return _export(args)
    if args.command == "demo":
        return iter_demo(args.output_dir, model=args.model, device=args.device, dtype=args.dtype)
    videos = [path for path in args.images if _is_video(path)]
    images = [path for path in args.images if path not in videos]
    return itertools.chain(_predict_videos(args, videos), _run_images(args, images) if images else ())


def _is_video(path: str) -> bool:
    from .video_io import is_video_path

    return is_video_path(path)


def _predict_videos(args: argparse.Namespace, videos: list[str]) -> Iterator[dict]:
    """Track each video; a boxes file then holds COCO detections whose image_id is the frame index."""
    if not videos:
        return
    from .video.predict import predict_video

    if args.boxes and len(videos) != len(args.images):
        raise ValueError("--boxes with a video applies to that video only: give the video alone.")
    if args.boxes and len(videos) > 1:
        raise ValueError(f"--boxes holds the detections of one video, got {len(videos)} videos.")
    pose = build_pipeline(args.model, args.device, args.batch_size, args.dtype)
    for video, stem in zip(videos, _output_stems(videos)):
        yield predict_video(
            pose, video, args.output_dir, draw_threshold=args.draw_threshold, name=stem, boxes=args.boxes,
            box_format=args.box_format, detector=None if args.boxes else args.detector,
            detector_threshold=args.detector_threshold, detect_every=args.detect_every, smooth=args.smooth,
            flip_test=not args.no_flip, dataset=args.dataset,
        )


def _run_images(args: argparse.Namespace, images: list[str]) -> Iterator[dict]:
    boxes = load_boxes_file(args.boxes, images) if args.boxes else None
    return iter_predict(
        images, args.output_dir, model=args.model, boxes=boxes, box_format=args.box_format,
        detector=args.detector, detector_threshold=args.detector_threshold, flip_test=not args.no_flip,
        dataset=args.dataset, draw_threshold=args.draw_threshold, write_coco_results=args.coco_results,
        device=args.device, batch_size=args.batch_size, resume=args.resume, dtype=args.dtype,
    )


if __name__ == "__main__":
    raise SystemExit(main())
