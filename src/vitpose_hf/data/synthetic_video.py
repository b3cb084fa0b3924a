"""Synthetic videos with known tracks: the synthetic figures walking, turning, occluding each other, entering and
leaving, for measuring pose tracking end to end.

    python -m vitpose_hf.data.synthetic --video --num-frames 60 --output-dir data/video --seed 0

writes `video.mp4`, `annotations.json` (COCO keypoints: one image per frame, `id` = frame index from 0, every
annotation with the `track_id` of its person) and `detections.json` (a box per annotated person and frame, jittered
as a detector's would be, with a score, in COCO detection results format, `image_id` = frame index). People,
backgrounds and visibility flags come from `vitpose_hf.data.figures`; this module only animates them: each person
moves along a straight path and blends between random key poses (a key pose facing the other way makes a turn).
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..keypoints import KeypointLayout, get_layout
from .figures import SyntheticPerson, _background, annotated_keypoints, body_point_names, coco_category
from .figures import render_person, sample_person

KEY_POSE_FRAMES = 16  # frames between two key poses


@dataclass
class _Actor:
    """One person of the video: key poses (pelvis at the origin), a path and the frames it exists in."""

    track_id: int
    key_poses: list[SyntheticPerson]
    start: np.ndarray  # pelvis position at `first_frame`
    velocity: np.ndarray  # pixels per frame
    first_frame: int
    last_frame: int  # inclusive
    phase: int  # offset into the key-pose cycle

    def pose_at(self, frame: int) -> SyntheticPerson | None:
        """The person drawn on `frame` (None outside its frames): key poses blended with a smooth step."""
        if not self.first_frame <= frame <= self.last_frame:
            return None
        step = frame - self.first_frame + self.phase
        k, t = divmod(step, KEY_POSE_FRAMES)
        t = t / KEY_POSE_FRAMES
        t = t * t * (3 - 2 * t)
        a, b = self.key_poses[k % len(self.key_poses)], self.key_poses[(k + 1) % len(self.key_poses)]
        person = copy.deepcopy(a)
        person.points = {name: (1 - t) * a.points[name] + t * b.points[name] for name in a.points}
        person.torso_polygon = [tuple((1 - t) * np.asarray(p) + t * np.asarray(q))
                                for p, q in zip(a.torso_polygon, b.torso_polygon)]
        person.facing_front = a.facing_front if t < 0.5 else b.facing_front
        offset = self.start + self.velocity * (frame - self.first_frame)
        person.translate(float(offset[0]), float(offset[1]))
        return person


def _actors(rng: np.random.Generator, num_frames: int, size: tuple[int, int], num_people: int) -> list[_Actor]:
    """People whose paths cross (occlusions); beyond the first two, some enter or leave through the sides."""
    height, width = size
    actors = []
    for track_id in range(num_people):
        person_height = rng.uniform(0.5, 0.8) * height
        poses = [sample_person(rng, person_height) for _ in range(3)]
        for k in range(1, len(poses)):  # one appearance (colours, widths) per person; only the joints change
            looks = copy.deepcopy(poses[0])
            looks.points, looks.torso_polygon = poses[k].points, poses[k].torso_polygon
            looks.facing_front = poses[k].facing_front
            poses[k] = looks
        y = height * rng.uniform(0.5, 0.6)
        direction = 1.0 if track_id % 2 == 0 else -1.0
        role = "stay" if track_id < 2 else str(rng.choice(["enter", "leave", "pass"]))
        if role == "stay":
            x0 = width * (0.2 if direction > 0 else 0.8) + rng.uniform(-0.05, 0.05) * width
            distance = width * rng.uniform(0.4, 0.6)
            first, last = 0, num_frames - 1
        else:
            first = int(rng.integers(1, max(2, num_frames // 2))) if role != "leave" else 0
            last = num_frames - 1 if role == "enter" else int(rng.integers(first + num_frames // 3, num_frames))
            # Enter from outside the image, or start inside and walk out.
            margin = person_height * 0.5
            x0 = (-margin if direction > 0 else width + margin) if role != "leave" else width * rng.uniform(0.3, 0.7)
            end = width + margin if direction > 0 else -margin
            distance = abs(end - x0) if role != "enter" else width * rng.uniform(0.4, 0.7)
            last = min(last, num_frames - 1)
        steps = max(last - first, 1)
        velocity = np.array([direction * distance / steps, rng.uniform(-0.1, 0.1) * height / steps])
        actors.append(_Actor(track_id, poses, np.array([x0, y]), velocity, first, last,
                             int(rng.integers(KEY_POSE_FRAMES))))
    return actors


def render_frame(background: Image.Image, people: list[tuple[int, SyntheticPerson]],
                 layout: KeypointLayout) -> tuple[Image.Image, list[dict]]:
    """One frame: people drawn back to front on the background; per person its track id, (K, 3) COCO keypoints,
    clipped xywh box and visible area (pixels)."""
    names = body_point_names(layout)
    image = background.copy()
    id_mask = Image.new("L", image.size, 0)
    for index, (_, person) in enumerate(people, start=1):
        render_person(image, person, layout, id_mask, mask_value=index)
    owner = np.asarray(id_mask)
    annotations = []
    for index, (track_id, person) in enumerate(people, start=1):
        keypoints = annotated_keypoints(person, names, owner, index)
        x0, y0, x1, y1 = person.extent()
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(image.width), x1), min(float(image.height), y1)
        area = float(np.count_nonzero(owner == index))
        if x1 - x0 < 2 or y1 - y0 < 2 or area == 0 or not (keypoints[:, 2] > 0).any():
            continue  # out of the image, or fully hidden: nothing to annotate
        annotations.append({"track_id": track_id, "keypoints": keypoints, "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "area": area})
    return image, annotations


def generate_synthetic_video(
    output_dir: str | Path,
    num_frames: int,
    seed: int = 0,
    size: tuple[int, int] = (256, 480),
    fps: float = 10.0,
    num_people: int = 4,
    layout: str | KeypointLayout = "coco",
    box_jitter: float = 0.04,
) -> dict[str, Path]:
    """Write `video.mp4`, `annotations.json` and `detections.json` to `output_dir` (see the module docstring);
    `size` is (height, width). Returns the three paths."""
    from ..video_io import VideoWriter

    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
    if num_people < 1:
        raise ValueError(f"num_people must be >= 1, got {num_people}.")
    layout = get_layout(layout)
    height, width = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    background = _background(rng, width, height)
    actors = _actors(rng, num_frames, (height, width), num_people)
    # Back to front: smaller (farther) people first.
    actors.sort(key=lambda actor: actor.key_poses[0].head_radius)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"video": output_dir / "video.mp4", "annotations": output_dir / "annotations.json",
             "detections": output_dir / "detections.json"}
    images, annotations, detections = [], [], []
    with VideoWriter(paths["video"], fps=fps) as writer:
        for frame in range(num_frames):
            present = [(actor.track_id, actor.pose_at(frame)) for actor in actors]
            image, people = render_frame(background, [(i, p) for i, p in present if p is not None], layout)
            writer.write(image)
            images.append({"id": frame, "file_name": f"video.mp4#frame={frame}", "frame_index": frame,
                           "width": width, "height": height})
            frame_detections = []
            for person in people:
                x, y, w, h = (round(float(v), 2) for v in person["bbox"])
                keypoints = person["keypoints"]
                flat = [round(float(v), 2) if j % 3 != 2 else int(v) for j, v in enumerate(keypoints.reshape(-1))]
                count = int(np.count_nonzero(keypoints[:, 2] > 0))
                annotations.append({
                    "id": len(annotations) + 1, "image_id": frame, "category_id": 1, "track_id": person["track_id"],
                    "bbox": [x, y, w, h], "area": round(person["area"], 2), "keypoints": flat,
                    "num_keypoints": count, "iscrowd": 0,
                })
                if count >= 3:  # a detector misses people hardly in the picture
                    jitter = rng.normal(0, box_jitter, 4) * [w, h, w, h]
                    x0, y0 = max(0.0, x + jitter[0]), max(0.0, y + jitter[1])
                    x1, y1 = min(float(width), x + w + jitter[2]), min(float(height), y + h + jitter[3])
                    if x1 - x0 > 1 and y1 - y0 > 1:
                        frame_detections.append({
                            "image_id": frame, "category_id": 1,
                            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                            "score": round(float(rng.uniform(0.7, 1.0)), 4),
                        })
            rng.shuffle(frame_detections)  # detection order says nothing about identity
            detections.extend(frame_detections)
    coco = {
        "info": {"description": f"vitpose_hf synthetic video, layout {layout.name}, seed {seed}",
                 "video": "video.mp4", "fps": fps, "num_frames": num_frames},
        "images": images,
        "annotations": annotations,
        "categories": [coco_category(layout)],
    }
    paths["annotations"].write_text(json.dumps(coco))
    paths["detections"].write_text(json.dumps(detections))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic video with known tracks.")
    parser.add_argument("--video", action="store_true", help="(accepted for `python -m vitpose_hf.data.synthetic`)")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--num-frames", default=60, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--layout", default="coco")
    parser.add_argument("--image-size", nargs=2, type=int, default=(480, 256), metavar=("W", "H"))
    parser.add_argument("--num-people", "--max-people", dest="num_people", default=4, type=int)
    parser.add_argument("--fps", default=10.0, type=float)
    args, _ = parser.parse_known_args(argv)
    paths = generate_synthetic_video(args.output_dir, args.num_frames, args.seed,
                                     (args.image_size[1], args.image_size[0]), args.fps, args.num_people, args.layout)
    print(f"Wrote {args.num_frames} frames: " + ", ".join(str(path) for path in paths.values()))


if __name__ == "__main__":
    main()
