"""Pose estimation and tracking over videos: streamed decoding and encoding (PyAV), OKS/IoU tracking with
pose-guided boxes between detections, One-Euro smoothing, and the annotated video + JSON-lines writer.

    from transformers import pipeline
    from vitpose_hf.video import track_video

    pose = pipeline("keypoint-detection")
    for frame in track_video(pose, "clip.mp4", boxes="detections.json", detect_every=5):
        frame.index, frame.time, frame.people          # each person with its "track_id"

Kept outside the model bundle: it needs PyAV (`pip install "vitpose_hf[video]"`) and tools above the bundle.
Submodules are imported on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "..video_io": ("VIDEO_EXTENSIONS", "VideoInfo", "VideoWriter", "is_video_path", "iter_frames", "read_video_info"),
    "tracking": ("PoseTracker", "pose_guided_box"),
    "smoothing": ("OneEuroFilter", "KeypointSmoother"),
    "predict": ("TrackedFrame", "load_frame_detections", "predict_video", "track_video"),
})
