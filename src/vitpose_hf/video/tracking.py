"""Pose tracking by matching each frame's people to the tracks of the frames before (a detection-based tracker, as
SORT, with the pose as a second cue, as mmpose's pose tracking).

Matching: each track's box is first predicted on the new frame by constant-velocity motion (SORT's motion model,
without its Kalman filter): the line fitted through the centres of its last `motion_frames` detection boxes, which
averages out a detector's jitter, with the size of the last one. A (track, person) pair can match only where the IoU
of the person's box with that predicted box exceeds `threshold` (metric "iou+oks", default, or "iou"); its score is
that IoU plus `oks_weight` times the OKS of the person's keypoints with the track's last keypoints moved by that
velocity (`keypoint_oks`, the OKS of OKS-NMS, with the layout's sigmas). The box comes first because identity is about
which person a box follows: where people overlap, top-down poses of neighbouring boxes drift onto the same body, so the
pose only breaks near-ties, and a person whose pose coincides with another's in the same frame (OKS above
`crowded_oks`) is scored by its box only. With metric "oks" the OKS alone gates and scores (mmpose's OKS tracking).
Pairs are taken greedily, best first, each track and person once: first the tracks seen on the previous frame, then,
with the people left, the tracks lost for a few frames (a matching cascade, as DeepSORT's), so that a track
reappearing after an occlusion does not take a box from a person followed all along. Unmatched people start new
tracks.

Identities: ids are 0, 1, 2, ... in order of appearance and are never reused within one tracker (one video), so an
id always names one person in the output. A track unmatched for more than `max_missed` consecutive frames ends (the
person left, or was lost): it is no longer matched, and whoever appears later gets a new id. Within `max_missed`
frames a person who was hidden is matched, by its predicted box, to its old track again.

Pose-guided boxes: on frames without detections, each live track's box is the bounding box of its confident
keypoints, enlarged (`pose_guided_box`), so that the pose model can follow people between detector runs; the person
found in a carried box continues the track the box came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..evaluation.nms import keypoint_oks

MATCH_METRICS = ("iou+oks", "iou", "oks")


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
    """One person followed over frames: its last keypoints (K, 2), scores (K,), xyxy box, the frame it was last
    matched on, and the (frame, box) pairs of its recent matches to detections, from which its motion is estimated
    (boxes carried between detections come from that motion, so they would only echo it, and drift with the pose;
    they are kept, in `carried`, only until the next detection, to give a track with one detection a velocity)."""

    track_id: int
    keypoints: np.ndarray
    scores: np.ndarray
    bbox: np.ndarray
    last_frame: int
    first_frame: int
    history: list[tuple[int, np.ndarray]] = field(default_factory=list)
    carried: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def area(self) -> float:
        return float(max(self.bbox[2] - self.bbox[0], 1.0) * max(self.bbox[3] - self.bbox[1], 1.0))

    def _motion(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The least-squares line through the recent box centres, (centre at the mean frame, velocity per frame,
        mean frame): a detector's box jitters by a few pixels each frame, as much as a person walks, so the velocity
        of the last two boxes alone is mostly noise."""
        points = self.history if len(self.history) > 1 else self.history + self.carried
        frames = np.array([frame for frame, _ in points], dtype=np.float64)
        centres = np.array([(box[:2] + box[2:]) / 2 for _, box in points])
        mean_frame, mean_centre = frames.mean(), centres.mean(axis=0)
        spread = ((frames - mean_frame) ** 2).sum()
        velocity = ((frames - mean_frame)[:, None] * (centres - mean_centre)).sum(axis=0) / spread if spread else \
            np.zeros(2)
        return mean_centre, velocity, mean_frame

    @property
    def velocity(self) -> np.ndarray:
        """Box centre motion in pixels per frame."""
        return self._motion()[1] if len(self.history) + len(self.carried) > 1 else np.zeros(2)

    def shift(self, frame_index: int) -> np.ndarray:
        """Where the track's constant-velocity motion has moved it by `frame_index` (x, y offset)."""
        return self.velocity * (frame_index - self.last_frame)

    def predicted_box(self, frame_index: int) -> np.ndarray:
        """The xyxy box expected on `frame_index`: centred on the motion line, of the last detection's size (a box's
        shape follows the pose, swinging arms and turns, faster than a mean over frames does)."""
        if len(self.history) + len(self.carried) < 2:
            return self.bbox
        centre, velocity, mean_frame = self._motion()
        centre = centre + velocity * (frame_index - mean_frame)
        half = (self.history[-1][1][2:] - self.history[-1][1][:2]) / 2
        return np.concatenate([centre - half, centre + half])


@dataclass
class PoseTracker:
    """Gives each person of each frame a `track_id` that stays with them across frames (see the module docstring).

    Args:
        sigmas: the keypoint layout's OKS sigmas (`layout.oks_sigmas`).
        metric: "iou+oks" (box IoU gates, OKS breaks ties; default), "iou" (boxes only) or "oks" (pose only).
        threshold: minimum IoU (OKS with metric "oks") of a match.
        oks_weight: weight of the OKS added to the IoU with metric "iou+oks".
        max_missed: frames a track survives without a match before it ends.
        motion_frames: how many of a track's latest detection boxes estimate its motion.
        keypoint_threshold: keypoints scoring below it do not count in the OKS, nor in pose-guided boxes.
        crowded_oks: with "iou+oks", people whose OKS with another person of the frame exceeds it match by box only.
    """

    sigmas: Sequence[float]
    metric: str = "iou+oks"
    threshold: float = 0.3
    oks_weight: float = 0.25
    max_missed: int = 10
    motion_frames: int = 8
    keypoint_threshold: float = 0.3
    crowded_oks: float = 0.5
    tracks: list[Track] = field(default_factory=list, init=False)
    next_id: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.metric not in MATCH_METRICS:
            raise ValueError(f"metric must be one of {MATCH_METRICS}, got {self.metric!r}.")
        if self.max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {self.max_missed}.")
        if self.motion_frames < 2:
            raise ValueError(f"motion_frames must be >= 2, got {self.motion_frames}.")
        if self.oks_weight < 0:
            raise ValueError(f"oks_weight must be >= 0, got {self.oks_weight}.")
        self.sigmas = np.asarray(self.sigmas, dtype=np.float64)

    def active_ids(self) -> list[int]:
        return [track.track_id for track in self.tracks]

    def _similarity(self, tracks: list[Track], people: Sequence[dict], frame_index: int) -> np.ndarray:
        """(tracks, people) match scores by `metric`, each track moved to where its motion puts it on `frame_index`;
        pairs that may not match (gating cue at or below `threshold`) score 0."""
        if not tracks or not people:
            return np.zeros((len(tracks), len(people)))
        boxes = np.asarray([person["bbox"] for person in people], dtype=np.float64)
        iou = box_iou(np.stack([track.predicted_box(frame_index) for track in tracks]), boxes)
        if self.metric == "iou":
            return np.where(iou > self.threshold, iou, 0.0)
        oks = self._oks(tracks, people, boxes, frame_index)
        if self.metric == "oks":
            return np.where(oks > self.threshold, oks, 0.0)
        return np.where(iou > self.threshold, iou + self.oks_weight * oks, 0.0)

    def _oks(self, tracks: list[Track], people: Sequence[dict], boxes: np.ndarray, frame_index: int) -> np.ndarray:
        """(tracks, people) OKS of each person's pose with each track's last pose moved by its motion; 0 for people
        whose pose coincides with another person's of the frame (with metric "iou+oks")."""
        others = np.stack([
            np.concatenate([np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 2),
                            np.asarray(p["scores"], dtype=np.float64).reshape(-1, 1)], axis=1)
            for p in people
        ])
        if others.shape[1] != len(self.sigmas):
            raise ValueError(f"People have {others.shape[1]} keypoints; the tracker has {len(self.sigmas)} sigmas.")
        areas = (boxes[:, 2:] - boxes[:, :2]).clip(1).prod(axis=1)
        rows = []
        for track in tracks:
            # Only keypoints confident in both frames count: the track's unsure ones say nothing about identity.
            masked = others.copy()
            masked[:, track.scores < self.keypoint_threshold, 2] = 0
            rows.append(keypoint_oks(track.keypoints + track.shift(frame_index), masked, track.area, areas, self.sigmas,
                                     self.keypoint_threshold))
        oks = np.stack(rows)
        if self.metric == "oks":
            return oks
        # People whose poses coincide (crowding pulled two crops onto one body) are told apart by their boxes only.
        for j in range(len(people)):
            rest = np.delete(np.arange(len(people)), j)
            if len(rest) and keypoint_oks(others[j], others[rest], areas[j], areas[rest], self.sigmas,
                                          self.keypoint_threshold).max() > self.crowded_oks:
                oks[:, j] = 0.0
        return oks

    def update(self, people: Sequence[dict], frame_index: int, track_ids: Sequence[int | None] | None = None
               ) -> list[int]:
        """Track ids of `people` (dicts with "keypoints", "scores", "bbox" xyxy) seen on frame `frame_index`; the
        tracks are updated and those unmatched for more than `max_missed` frames are ended.

        `track_ids` gives, per person, the live track its box was carried from (`carried_boxes`): that person
        continues the track without matching; people without one (None) are matched as usual.
        """
        ids: list[int | None] = [None] * len(people)
        by_id = {track.track_id: track for track in self.tracks}
        for col, track_id in enumerate(track_ids if track_ids is not None else []):
            if track_id is not None:
                if track_id not in by_id:
                    raise ValueError(f"Person {col} of frame {frame_index} continues track {track_id}, which is not "
                                     "live.")
                ids[col] = int(track_id)
                self._refresh(by_id.pop(track_id), people[col], frame_index, detected=False)
        recent = [track for track in self.tracks if track.track_id in by_id and track.last_frame == frame_index - 1]
        lost = [track for track in self.tracks if track.track_id in by_id and track.last_frame < frame_index - 1]
        for free_tracks in (recent, lost):  # the matching cascade: people followed all along first
            free_people = [col for col in range(len(people)) if ids[col] is None]
            similarity = self._similarity(free_tracks, [people[col] for col in free_people], frame_index)
            for row, col in greedy_match(similarity, 0.0):
                track = free_tracks[row]
                ids[free_people[col]] = track.track_id
                self._refresh(track, people[free_people[col]], frame_index)
        for col, person in enumerate(people):
            if ids[col] is None:
                track = Track(self.next_id, np.zeros(0), np.zeros(0), np.zeros(4), frame_index, frame_index)
                self._refresh(track, person, frame_index)
                self.tracks.append(track)
                ids[col] = self.next_id
                self.next_id += 1
        self.tracks = [track for track in self.tracks if frame_index - track.last_frame <= self.max_missed]
        return [int(i) for i in ids]

    def continuity(self, people: Sequence[dict], track_ids: Sequence[int], frame_index: int) -> np.ndarray:
        """Match score (by `metric`) of each person of frame `frame_index` to the live track `track_ids[i]` it was
        carried from: how well it continues that track rather than jumping to someone else."""
        by_id = {track.track_id: track for track in self.tracks}
        return np.array([self._similarity([by_id[i]], [person], frame_index)[0, 0]
                         for person, i in zip(people, track_ids)])

    def _refresh(self, track: Track, person: dict, frame_index: int, detected: bool = True) -> None:
        bbox = np.asarray(person["bbox"], dtype=np.float64).reshape(4)
        if detected:
            track.history = [*track.history, (frame_index, bbox)][-self.motion_frames:]
            track.carried = []
        else:
            track.carried.append((frame_index, bbox))
        track.keypoints = np.asarray(person["keypoints"], dtype=np.float64).reshape(-1, 2)
        track.scores = np.asarray(person["scores"], dtype=np.float64).reshape(-1)
        track.bbox = bbox
        track.last_frame = frame_index

    def carried_boxes(self, frame_index: int, image_size: tuple[int, int] | None = None,
                      padding: float = 1.25) -> tuple[np.ndarray, list[int]]:
        """Pose-guided xyxy boxes (N, 4) of the tracks seen on the previous frame, for a frame without detections,
        and those tracks' ids (pass them to `update` with the people found in the boxes).

        Only tracks matched on `frame_index - 1` are carried: a person lost once is not searched for blindly.
        """
        boxes, ids = [], []
        for track in self.tracks:
            if track.last_frame != frame_index - 1:
                continue
            box = pose_guided_box(track.keypoints + track.shift(frame_index), track.scores, self.keypoint_threshold,
                                  padding, image_size)
            if box is not None:
                boxes.append(box)
                ids.append(track.track_id)
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), ids


__all__ = ["MATCH_METRICS", "PoseTracker", "Track", "box_iou", "greedy_match", "pose_guided_box"]
