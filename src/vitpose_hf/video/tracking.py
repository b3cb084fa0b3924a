"""Pose tracking by matching each frame's people to the tracks of the frames before (as mmpose's pose tracking).

Matching: the similarity of every (track, person) pair is the OKS of the person's keypoints with the track's last
keypoints (the same OKS as OKS-NMS, `keypoint_oks`, with the layout's sigmas), the IoU of their boxes, or (default)
the mean of both: where people overlap, top-down poses of neighbouring boxes drift onto the same body and OKS alone
swaps identities, while boxes alone ignore the pose; the mean keeps both cues. Pairs are
then taken greedily, most similar first, each track and each person at most once, and only above `threshold`.
Unmatched people start new tracks.

Identities: ids are 0, 1, 2, ... in order of appearance and are never reused within one tracker (one video), so an
id always names one person in the output. A track unmatched for more than `max_missed` consecutive frames ends (the
person left, or was lost): it is no longer matched, and whoever appears later gets a new id. Within `max_missed`
frames a person who was hidden is matched to its old track again.

Pose-guided boxes: on frames without detections, each live track's box is the bounding box of its confident
keypoints, enlarged (`pose_guided_box`), so that the pose model can follow people between detector runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..training.evaluation import keypoint_oks

MATCH_METRICS = ("oks+iou", "oks", "iou")


def pose_guided_box(
    keypoints: np.ndarray, scores: np.ndarray, threshold: float = 0.3, padding: float = 1.25,
    image_size: tuple[int, int] | None = None, min_keypoints: int = 3,
) -> np.ndarray | None:
    """The xyxy box of the keypoints scoring at least `threshold`, enlarged `padding` times about its centre (and
    clipped to `image_size`, (height, width)); None with fewer than `min_keypoints` confident keypoints, or where
    the clipped box has no area (the person left the image)."""
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    confident = keypoints[(np.asarray(scores, dtype=np.float64).reshape(-1) >= threshold)
                          & np.isfinite(keypoints).all(axis=1)]
    if len(confident) < max(min_keypoints, 1):
        return None
    low, high = confident.min(axis=0), confident.max(axis=0)
    center, half = (low + high) / 2, (high - low) / 2 * padding
    box = np.concatenate([center - half, center + half])
    if image_size is not None:
        height, width = image_size
        box = np.clip(box, 0, [width, height, width, height])
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        return None
    return box


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of xyxy boxes."""
    a, b = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4), np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(high - low, 0, None).prod(axis=-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, column) pairs taken most similar first, each row and column once, similarity above `threshold`."""
    pairs = []
    if similarity.size == 0:
        return pairs
    used_rows, used_cols = set(), set()
    order = np.argsort(-similarity, axis=None, kind="stable")
    for flat in order:
        row, col = divmod(int(flat), similarity.shape[1])
        if similarity[row, col] <= threshold:
            break
        if row in used_rows or col in used_cols:
            continue
        pairs.append((row, col))
        used_rows.add(row)
        used_cols.add(col)
    return pairs


@dataclass
class Track:
    """One person followed over frames: its last keypoints (K, 2), scores (K,), xyxy box and the frame it was last
    matched on."""

    track_id: int
    keypoints: np.ndarray
    scores: np.ndarray
    bbox: np.ndarray
    last_frame: int
    first_frame: int

    @property
    def area(self) -> float:
        return float(max(self.bbox[2] - self.bbox[0], 1.0) * max(self.bbox[3] - self.bbox[1], 1.0))


class PoseTracker:
    """Gives each person of each frame a `track_id` that stays with them across frames (see the module docstring).

    Args:
        sigmas: the keypoint layout's OKS sigmas (`layout.oks_sigmas`).
        metric: "oks+iou" (mean of both, default), "oks" (pose only, as mmpose) or "iou" (boxes only).
        threshold: minimum similarity of a match (0.3, as mmpose's tracking threshold).
        max_missed: frames a track survives without a match before it ends.
        keypoint_threshold: keypoints scoring below it do not count in the OKS, nor in pose-guided boxes.
    """

    def __init__(self, sigmas: Sequence[float], metric: str = "oks+iou", threshold: float = 0.3, max_missed: int = 10,
                 keypoint_threshold: float = 0.3) -> None:
        if metric not in MATCH_METRICS:
            raise ValueError(f"metric must be one of {MATCH_METRICS}, got {metric!r}.")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}.")
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.metric = metric
        self.threshold = float(threshold)
        self.max_missed = int(max_missed)
        self.keypoint_threshold = float(keypoint_threshold)
        self.tracks: list[Track] = []
        self.next_id = 0

    def active_ids(self) -> list[int]:
        return [track.track_id for track in self.tracks]

    def _similarity(self, people: Sequence[dict]) -> np.ndarray:
        if not self.tracks or not people:
            return np.zeros((len(self.tracks), len(people)))
        boxes = np.asarray([person["bbox"] for person in people], dtype=np.float64)
        iou = box_iou(np.stack([track.bbox for track in self.tracks]), boxes)
        if self.metric == "iou":
            return iou
        others = np.stack([
            np.concatenate([np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 2),
                            np.asarray(p["scores"], dtype=np.float64).reshape(-1, 1)], axis=1)
            for p in people
        ])
        if others.shape[1] != len(self.sigmas):
            raise ValueError(f"People have {others.shape[1]} keypoints; the tracker has {len(self.sigmas)} sigmas.")
        areas = (boxes[:, 2:] - boxes[:, :2]).clip(1).prod(axis=1)
        rows = []
        for track in self.tracks:
            # Only keypoints confident in both frames count: the track's unsure ones say nothing about identity.
            masked = others.copy()
            masked[:, track.scores < self.keypoint_threshold, 2] = 0
            rows.append(keypoint_oks(track.keypoints, masked, track.area, areas, self.sigmas, self.keypoint_threshold))
        oks = np.stack(rows)
        return oks if self.metric == "oks" else (oks + iou) / 2

    def update(self, people: Sequence[dict], frame_index: int) -> list[int]:
        """Track ids of `people` (dicts with "keypoints", "scores", "bbox" xyxy) seen on frame `frame_index`; the
        tracks are updated and those unmatched for more than `max_missed` frames are ended."""
        similarity = self._similarity(people)
        ids: list[int | None] = [None] * len(people)
        for row, col in greedy_match(similarity, self.threshold):
            track = self.tracks[row]
            ids[col] = track.track_id
            self._refresh(track, people[col], frame_index)
        for col, person in enumerate(people):
            if ids[col] is None:
                track = Track(self.next_id, np.zeros(0), np.zeros(0), np.zeros(4), frame_index, frame_index)
                self._refresh(track, person, frame_index)
                self.tracks.append(track)
                ids[col] = self.next_id
                self.next_id += 1
        self.tracks = [track for track in self.tracks if frame_index - track.last_frame <= self.max_missed]
        return [int(i) for i in ids]

    @staticmethod
    def _refresh(track: Track, person: dict, frame_index: int) -> None:
        track.keypoints = np.asarray(person["keypoints"], dtype=np.float64).reshape(-1, 2)
        track.scores = np.asarray(person["scores"], dtype=np.float64).reshape(-1)
        track.bbox = np.asarray(person["bbox"], dtype=np.float64).reshape(4)
        track.last_frame = frame_index

    def carried_boxes(self, frame_index: int, image_size: tuple[int, int] | None = None,
                      padding: float = 1.25) -> np.ndarray:
        """Pose-guided xyxy boxes (N, 4) of the tracks seen on the previous frame, for a frame without detections.

        Only tracks matched on `frame_index - 1` are carried: a person lost once is not searched for blindly.
        """
        boxes = []
        for track in self.tracks:
            if track.last_frame != frame_index - 1:
                continue
            box = pose_guided_box(track.keypoints, track.scores, self.keypoint_threshold, padding, image_size)
            if box is not None:
                boxes.append(box)
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


__all__ = ["MATCH_METRICS", "PoseTracker", "Track", "box_iou", "greedy_match", "pose_guided_box"]
