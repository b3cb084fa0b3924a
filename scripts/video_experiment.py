"""Pose tracking on a synthetic video with known tracks: track consistency, OKS-AP, frame count, speed.

    python scripts/video_experiment.py [--seed 20261203] [--num-frames 80] [--output-dir video_experiment]

Generates the video (`vitpose_hf.data.synthetic_video`), tracks it with the default (embedded) model, once with the
jittered detections on every frame and once with detections on every 5th frame only (pose-guided boxes between), and
prints per true track the share of its frames carrying its majority `track_id` (outputs matched to true people by
box IoU, the identity measure, and by OKS, which also asks for the right pose), the COCO OKS-AP of all frames, and
whether the annotated video has every frame. Then frames/s of the batched video path against calling the pipeline
frame by frame with the same boxes.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np


def _frames_by_image(annotations: list[dict]) -> dict[int, list[dict]]:
    """The annotations of each frame that have at least one labelled keypoint (a person hidden entirely is not
    expected to be found)."""
    by_frame: dict[int, list[dict]] = {}
    for ann in annotations:
        if ann.get("num_keypoints", 0) > 0:
            by_frame.setdefault(ann["image_id"], []).append(ann)
    return by_frame


def _pair_by_iou(truths: list[dict], boxes: np.ndarray, min_iou: float) -> dict[int, int]:
    """One-to-one pairs (annotation index -> box index) of the annotations' COCO xywh boxes with xyxy `boxes`
    maximising the total IoU (Hungarian), pairs with IoU >= `min_iou` only."""
    from scipy.optimize import linear_sum_assignment
    from vitpose_hf.video.tracking import box_iou

    if not truths or not len(boxes):
        return {}
    truth_boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (ann["bbox"] for ann in truths)])
    iou = box_iou(truth_boxes, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    rows, cols = linear_sum_assignment(-iou)
    return {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou}


def match_by_box(frames: list[dict], annotations: list[dict], detections: dict[int, np.ndarray] | None = None,
                 min_iou: float = 0.5) -> dict[int, list[int | None]]:
    """Per true track, the predicted track id of each of its frames (None where no output matches): per frame,
    outputs are paired with true people by the IoU of the output's box (the detection it was predicted in) with the
    annotation's box. Identity is about which person a box follows, so an occluded person whose pose slid onto
    someone else still counts as followed. With `detections` (frame -> xyxy boxes given to the tracker), only the
    frames where the person is among them count: on the others nothing could follow it."""
    by_frame = _frames_by_image(annotations)
    assigned: dict[int, list[int | None]] = {}
    for frame in frames:
        truths, people = by_frame.get(frame["frame"], []), frame["people"]
        if detections is not None:
            given = _pair_by_iou(truths, detections.get(frame["frame"], np.zeros((0, 4))), min_iou)
            truths = [ann for row, ann in enumerate(truths) if row in given]
        pairs = _pair_by_iou(truths, np.array([person["bbox"] for person in people]), min_iou)
        for row, ann in enumerate(truths):
            column = pairs.get(row)
            assigned.setdefault(ann["track_id"], []).append(None if column is None else people[column]["track_id"])
    return assigned


def match_by_oks(frames: list[dict], annotations: list[dict], sigmas: np.ndarray) -> dict[int, list[int | None]]:
    """Per true track, the predicted track id of each of its frames (None where no prediction matches): per frame,
    true and predicted people are paired greedily by OKS (> 0.5), which also requires the pose to be right."""
    from vitpose_hf.evaluation import keypoint_oks
    from vitpose_hf.video.tracking import greedy_match

    by_frame = _frames_by_image(annotations)
    assigned: dict[int, list[int | None]] = {}
    for frame in frames:
        truths = by_frame.get(frame["frame"], [])
        people = frame["people"]
        similarity = np.zeros((len(truths), len(people)))
        if people:
            predicted = np.stack([np.concatenate([np.asarray(p["keypoints"]), np.ones((len(sigmas), 1))], axis=1)
                                  for p in people])
            areas = np.array([max(ann["area"], 1.0) for ann in truths])
            for row, ann in enumerate(truths):
                truth = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
                labelled = truth[:, 2] > 0
                masked = predicted.copy()
                masked[:, ~labelled, 2] = 0  # only labelled joints count, as in COCO's OKS
                similarity[row] = keypoint_oks(truth, masked, areas[row], areas[row] * np.ones(len(people)), sigmas,
                                               0.5)
        pairs = dict(greedy_match(similarity, 0.5))
        for row, ann in enumerate(truths):
            column = pairs.get(row)
            assigned.setdefault(ann["track_id"], []).append(None if column is None else people[column]["track_id"])
    return assigned


def consistency(assigned: dict[int, list[int | None]], matched_only: bool = False) -> dict[int, float]:
    """Share of each true track's frames whose predicted id is the track's most frequent one: of all its annotated
    frames (a frame where no prediction matches it counts as a miss), or of the frames where one matches."""
    shares = {}
    for track, ids in sorted(assigned.items()):
        counts = Counter(i for i in ids if i is not None)
        total = sum(counts.values()) if matched_only else len(ids)
        shares[track] = (counts.most_common(1)[0][1] if counts else 0) / max(total, 1)
    return shares


def coco_results_of(frames: list[dict]) -> list[dict]:
    from vitpose_hf.cli import coco_results

    results = []
    for frame in frames:
        results.extend(coco_results(frame["people"], frame["frame"]))
    return results


def run_setting(pose, paths: dict, output_dir: Path, detect_every: int, sigmas: np.ndarray) -> dict:
    from vitpose_hf.boxes import boxes_to_xyxy
    from vitpose_hf.evaluation import coco_keypoint_eval
    from vitpose_hf.video_io import iter_frames
    from vitpose_hf.video.predict import load_frame_detections, predict_video

    written = predict_video(pose, paths["video"], output_dir, boxes=paths["detections"], detect_every=detect_every,
                            name=f"every{detect_every}")
    frames = [json.loads(line) for line in Path(written["jsonl"]).read_text().splitlines()]
    truth = json.loads(Path(paths["annotations"]).read_text())
    given = {frame: boxes_to_xyxy(boxes[:, :4], "xywh")
             for frame, boxes in load_frame_detections(paths["detections"]).items()}
    by_box = match_by_box(frames, truth["annotations"])
    by_detected = match_by_box(frames, truth["annotations"], given)
    by_oks = match_by_oks(frames, truth["annotations"], sigmas)
    ap = coco_keypoint_eval(truth, coco_results_of(frames), sigmas)
    decoded = sum(1 for _ in iter_frames(written["output_video"]))
    return {"detect_every": detect_every, "consistency (box IoU, detected frames)": consistency(by_detected),
            "consistency (box IoU)": consistency(by_box),
            "consistency (OKS)": consistency(by_oks), "consistency (OKS, matched frames)": consistency(by_oks, True),
            "AP": ap["AP"], "AP50": ap["AP50"],
            "frames_in": len(truth["images"]), "frames_jsonl": len(frames), "frames_video": decoded,
            "tracks": written["tracks"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--num-frames", type=int, default=80)
    parser.add_argument("--output-dir", type=Path, default=Path("video_experiment"))
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()

    from vitpose_hf.cli import build_pipeline
    from vitpose_hf.data.synthetic_video import generate_synthetic_video

    paths = generate_synthetic_video(args.output_dir / "data", args.num_frames, seed=args.seed)
    pose = build_pipeline(None, None, 8)
    sigmas = np.asarray(pose.model.config.layout(None).oks_sigmas)
    print(f"synthetic video: {paths['video']} ({args.num_frames} frames, seed {args.seed}); model "
          f"{pose.model.name_or_path}")
    for detect_every in (1, 5):
        row = run_setting(pose, paths, args.output_dir, detect_every, sigmas)
        print(f"\ndetections every {detect_every} frame(s): OKS-AP {row['AP']:.3f} (AP50 {row['AP50']:.3f}), "
              f"{row['tracks']} predicted ids")
        for measure, label in (("consistency (box IoU, detected frames)",
                                "outputs matched by box IoU >= 0.5, frames where the person is in the detections"),
                               ("consistency (box IoU)", "outputs matched by box IoU >= 0.5, all frames"),
                               ("consistency (OKS)", "outputs matched by OKS > 0.5, all frames"),
                               ("consistency (OKS, matched frames)", "outputs matched by OKS > 0.5, matched frames")):
            shares = ", ".join(f"{k}: {v:.3f}" for k, v in row[measure].items())
            print(f"  consistency, {label}: min {min(row[measure].values()):.3f} ({shares})")
        every_frame = row["frames_in"] == row["frames_jsonl"] == row["frames_video"]
        print(f"  frames: input {row['frames_in']}, jsonl {row['frames_jsonl']}, annotated video {row['frames_video']}"
              f" -> {'every frame kept' if every_frame else 'MISMATCH'}")
    if not args.skip_speed:
        from vitpose_hf.benchmarks.video import run_video_benchmark

        result = run_video_benchmark(video=paths["video"], boxes=paths["detections"], pose=pose)
        print(f"\nspeed: batched video path {result['video path frames/s']:.2f} frames/s, frame-by-frame pipeline "
              f"{result['frame by frame frames/s']:.2f} frames/s, ratio {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
