"""Pose tracking over a video: frames streamed through the keypoint-detection pipeline, ids from `PoseTracker`.

    pose = pipeline("keypoint-detection")
    for frame in track_video(pose, "clip.mp4", boxes="detections.json", detect_every=5, smooth=True):
        frame.record()      # {"frame": i, "time": seconds, "people": [{"track_id", "keypoints", ...}, ...]}
    predict_video(pose, "clip.mp4", "out/")   # out/clip.mp4 (skeletons and ids drawn) + out/clip.jsonl

Boxes per frame come from a boxes file (COCO detection results whose `image_id` is the 0-based frame index), from a
detector, or, with neither, the whole frame is one person (as for images). A frame "has detections" when it is a
detection frame (index divisible by `detect_every`) and boxes were found for it; every other frame follows the people
of the previous frame with pose-guided boxes (the bounding box of their confident keypoints, enlarged).

Batching: consecutive frames with detections do not depend on each other's poses, so up to `batch_frames` of them
go through the pipeline in one call and their crops share forwards; a frame with carried boxes needs the previous
frame's poses and runs alone (its people still share one forward).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..boxes import boxes_to_xyxy
from ..pipeline import detect_people, resolve_detector
from ..evaluation.nms import oks_nms
from ..video_io import VideoWriter, iter_frames, read_video_info
from .smoothing import KeypointSmoother
from .tracking import PoseTracker

DUPLICATE_OKS = 0.9  # carried people this similar to a better one are the same person followed twice


@dataclass
class TrackedFrame:
    """One frame's result: its index, time in seconds, the decoded image and its people, each with a `track_id`."""

    index: int
    time: float
    image: Image.Image = field(repr=False)
    people: list[dict]
    detected: bool  # boxes came from detections (not carried from the previous frame)

    def record(self) -> dict:
        """The JSON-lines record: coordinates rounded to 0.01 pixel, scores to 1e-4."""
        people = []
        for person in self.people:
            people.append({
                "track_id": int(person["track_id"]),
                "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in person["keypoints"]],
                "scores": [round(float(v), 4) for v in person["scores"]],
                "labels": list(person["labels"]),
                "bbox": [round(float(v), 2) for v in person["bbox"]],
                "box_score": round(float(person["box_score"]), 4),
            })
        return {"frame": self.index, "time": round(self.time, 6), "people": people}


def load_frame_detections(path: str | os.PathLike) -> dict[int, np.ndarray]:
    """Person boxes per frame from COCO detection results whose `image_id` is the 0-based frame index: frame ->
    (N, 5) array of xywh + score. Other categories than 1 (person) are skipped."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read boxes file {path}: {error}") from error
    if not isinstance(data, list) or any(not isinstance(entry, dict) for entry in data):
        raise ValueError(f"Boxes file {path} of a video must be COCO detection results: a list of "
                         '{"image_id": frame index, "bbox": [x, y, w, h], "score"} objects.')
    per_frame: dict[int, list] = {}
    for index, entry in enumerate(data):
        if "image_id" not in entry or "bbox" not in entry:
            raise ValueError(f"Detection {index} in {path} lacks 'image_id' or 'bbox'.")
        frame = entry["image_id"]
        if not isinstance(frame, int) or frame < 0:
            raise ValueError(f"Detection {index} in {path}: image_id must be a frame index >= 0, got {frame!r}.")
        if len(entry["bbox"]) != 4:
            raise ValueError(f"Detection {index} in {path}: bbox must be [x, y, w, h], got {entry['bbox']!r}.")
        if entry.get("category_id", 1) != 1:
            continue
        per_frame.setdefault(frame, []).append([float(v) for v in entry["bbox"]] + [float(entry.get("score", 1.0))])
    return {frame: np.asarray(rows, dtype=np.float64) for frame, rows in per_frame.items()}


def _frame_boxes(boxes: Mapping[int, Any], index: int, box_format: str) -> np.ndarray | None:
    """xyxy + score boxes (N, 5) given for frame `index`, None where there are none."""
    given = boxes.get(index)
    if given is None or len(given) == 0:
        return None
    array = np.asarray(given, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] not in (4, 5):
        raise ValueError(f"Boxes of frame {index} must have shape (N, 4) or (N, 5), got {array.shape}.")
    scores = array[:, 4:5] if array.shape[1] == 5 else np.ones((len(array), 1))
    return np.concatenate([boxes_to_xyxy(array[:, :4], box_format), scores], axis=1)


def _deduplicate(people: list[dict], continuity: np.ndarray, sigmas: np.ndarray) -> list[int]:
    """Indices of the carried people to keep. Where two tracks collapsed onto one body (OKS above DUPLICATE_OKS),
    the person that best continues its own track (`continuity`) is kept: the other track's person was hidden and
    its box slid onto whoever hid it."""
    if len(people) < 2:
        return list(range(len(people)))
    results = []
    for index, person in enumerate(people):
        keypoints = np.concatenate([np.asarray(person["keypoints"]), np.asarray(person["scores"])[:, None]], axis=1)
        x0, y0, x1, y1 = person["bbox"]
        results.append({"image_id": 0, "keypoints": keypoints.reshape(-1).tolist(), "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "score": float(continuity[index]), "index": index})
    kept = oks_nms(results, DUPLICATE_OKS, sigmas)
    return sorted(result["index"] for result in kept)


def track_video(
    pose: Any,
    source: str | os.PathLike,
    boxes: str | os.PathLike | Mapping[int, Any] | None = None,
    box_format: str = "xywh",
    detector: Any = None,
    detector_threshold: float = 0.5,
    detect_every: int = 1,
    smooth: bool = False,
    batch_frames: int = 8,
    flip_test: bool = True,
    dataset: int | str | None = None,
    tracker: PoseTracker | None = None,
    smoother: KeypointSmoother | None = None,
) -> Iterator[TrackedFrame]:
    """Yield every frame of `source` with its tracked people, decoding one window of frames at a time.

    Args:
        pose: a keypoint-detection pipeline (`pipeline("keypoint-detection")`).
        source: a video file or a stream URL ffmpeg opens.
        boxes: a boxes file (COCO detection results, xywh, image_id = frame index) or a mapping frame -> boxes
            in `box_format` (optionally a fifth score column).
        detector: an object detector (as the pipeline's `detector`), run on detection frames when `boxes` is None.
        detect_every: detection frames are those whose index is a multiple of it; the others carry boxes.
        smooth: One-Euro smoothing of each track's keypoints (`smoother` sets its parameters).
        batch_frames: detection frames sent to the pipeline in one call.
        tracker: a `PoseTracker` (default: box IoU with motion, OKS to break ties, the model layout's sigmas).
    """
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}.")
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}.")
    if boxes is not None and detector is not None:
        raise ValueError("Give boxes or a detector, not both.")
    if isinstance(boxes, (str, os.PathLike)):
        boxes, box_format = load_frame_detections(boxes), "xywh"  # COCO results are always xywh
    detection_model = resolve_detector(detector, pose.device) if detector is not None else None
    layout = pose.model.config.layout(dataset)
    sigmas = np.asarray(layout.oks_sigmas if layout.oks_sigmas is not None else [0.05] * layout.num_keypoints)
    tracker = tracker if tracker is not None else PoseTracker(sigmas)
    smoother = smoother if smoother is not None else (KeypointSmoother() if smooth else None)
    call = {"box_format": "xyxy", "flip_test": flip_test, "dataset": dataset}

    def finish(index: int, time: float, image: Image.Image, people: list[dict], detected: bool,
               carried_ids: list[int] | None = None) -> TrackedFrame:
        ids = tracker.update(people, index, carried_ids)
        tracked = []
        for track_id, person in zip(ids, people):
            person = {"track_id": track_id, **person}
            if smoother is not None:
                person["keypoints"] = smoother.smooth(track_id, np.asarray(person["keypoints"]), time).tolist()
            tracked.append(person)
        if smoother is not None:
            smoother.keep_only(tracker.active_ids())
        return TrackedFrame(index, time, image, tracked, detected)

    window: list[tuple[int, float, Image.Image, np.ndarray]] = []

    def flush() -> Iterator[TrackedFrame]:
        if not window:
            return
        results = pose([item[2] for item in window], boxes=[item[3] for item in window], **call)
        for (index, time, image, _), people in zip(window, results):
            yield finish(index, time, image, people, True)
        window.clear()

    for index, time, image in iter_frames(source):
        found = None
        if index % detect_every == 0:
            if boxes is not None:
                found = _frame_boxes(boxes, index, box_format)
            elif detection_model is not None:
                xyxy, scores = detect_people(detection_model, image, detector_threshold)
                found = np.concatenate([xyxy, scores[:, None]], axis=1) if len(xyxy) else None
            else:
                found = np.array([[0.0, 0.0, image.width, image.height, 1.0]])
        if found is not None:
            window.append((index, time, image, found))
            if len(window) >= batch_frames:
                yield from flush()
            continue
        yield from flush()  # the carried boxes need every earlier frame tracked
        carried, carried_ids = tracker.carried_boxes(index, (image.height, image.width))
        people = pose(image, boxes=carried, **call) if len(carried) else []
        kept = _deduplicate(people, tracker.continuity(people, carried_ids, index), sigmas)
        yield finish(index, time, image, [people[i] for i in kept], False, [carried_ids[i] for i in kept])
    yield from flush()


def draw_tracks(image: Image.Image, people: list[dict], config: Any, threshold: float = 0.3,
                dataset: int | str | None = None) -> Image.Image:
    """The skeletons (`visualization.draw_pose`) with each person's track id written above its box."""
    from ..visualization import draw_pose

    drawn = draw_pose(image, people, config, threshold=threshold, dataset=dataset)
    draw = ImageDraw.Draw(drawn)
    for person in people:
        x0, y0 = float(person["bbox"][0]), float(person["bbox"][1])
        draw.text((x0 + 2, max(0.0, y0 - 11)), f"#{person['track_id']}", fill=(255, 255, 0), stroke_width=1,
                  stroke_fill=(0, 0, 0))
    return drawn


def predict_video(
    pose: Any, source: str | os.PathLike, output_dir: str | os.PathLike, draw_threshold: float = 0.3,
    name: str | None = None, **track_kwargs: Any,
) -> dict:
    """Track `source` and write `output_dir/<name>.mp4` (every frame, same frame rate, skeletons and ids drawn) and
    `output_dir/<name>.jsonl` (one `TrackedFrame.record()` per line); returns what was written."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    name = name or Path(os.fspath(source).split("?")[0]).stem or "video"
    info = read_video_info(source)
    video_path, jsonl_path = output_dir / f"{name}.mp4", output_dir / f"{name}.jsonl"
    frames = people = 0
    track_ids: set[int] = set()
    with VideoWriter(video_path, fps=info.fps) as writer, jsonl_path.open("w") as lines:
        for frame in track_video(pose, source, **track_kwargs):
            writer.write(draw_tracks(frame.image, frame.people, pose.model.config, draw_threshold,
                                     track_kwargs.get("dataset")))
            lines.write(json.dumps(frame.record()) + "\n")
            frames += 1
            people += len(frame.people)
            track_ids.update(person["track_id"] for person in frame.people)
    return {"video": os.fspath(source), "output_video": str(video_path), "jsonl": str(jsonl_path), "frames": frames,
            "people": people, "tracks": len(track_ids), "fps": float(info.fps), "model": pose.model.name_or_path}


__all__ = ["TrackedFrame", "draw_tracks", "load_frame_detections", "predict_video", "track_video"]
