"""Frames/s of pose tracking over a video: the batched video path against the pipeline called frame by frame.

    python scripts/benchmark.py --suite video          # a generated 40-frame synthetic video, the embedded model

Both decode the same video and use the same per-frame boxes (the synthetic detections); the video path
(`vitpose_hf.video.track_video`) sends windows of `batch_frames` frames through the pipeline in one call, so crops of
consecutive frames share forwards, and adds tracking; the reference calls `pose(frame, boxes=...)` once per frame.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def run_video_benchmark(video: str | Path | None = None, boxes: str | Path | None = None, pose=None,
                        num_frames: int = 40, batch_frames: int = 8, batch_size: int = 16, repeats: int = 2) -> dict:
    """Best-of-`repeats` frames/s of both paths (the first run of each also warms up)."""
    from transformers import pipeline

    from ..data.synthetic_video import generate_synthetic_video
    from ..video_io import iter_frames
    from ..video.predict import load_frame_detections, track_video

    folder = None
    if video is None:
        folder = tempfile.TemporaryDirectory()
        paths = generate_synthetic_video(folder.name, num_frames, seed=7)
        video, boxes = paths["video"], paths["detections"]
    if pose is None:
        from ..defaults import embedded_model_path

        pose = pipeline("keypoint-detection", model=embedded_model_path(), device="cpu", batch_size=batch_size)
    pose._batch_size = batch_size
    per_frame = load_frame_detections(boxes)

    def video_path() -> int:
        return sum(1 for _ in track_video(pose, video, boxes=per_frame, batch_frames=batch_frames))

    def frame_by_frame() -> int:
        count = 0
        for index, _, image in iter_frames(video):
            pose(image, boxes=per_frame.get(index, []))
            count += 1
        return count

    best = {}
    with torch.inference_mode():
        for _ in range(repeats):
            for name, fn in (("video path", video_path), ("frame by frame", frame_by_frame)):
                start = time.perf_counter()
                frames = fn()
                rate = frames / (time.perf_counter() - start)
                best[name] = max(best.get(name, 0.0), rate)
    if folder is not None:
        folder.cleanup()
    return {"frames": frames, "batch_frames": batch_frames, "batch_size": batch_size,
            "video path frames/s": best["video path"], "frame by frame frames/s": best["frame by frame"],
            "ratio": best["video path"] / best["frame by frame"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-frames", type=int, default=40)
    parser.add_argument("--batch-frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    print(run_video_benchmark(num_frames=args.num_frames, batch_frames=args.batch_frames, batch_size=args.batch_size))


if __name__ == "__main__":
    main()
