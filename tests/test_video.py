"""Video: PyAV round trip, tracking ids, pose-guided boxes, One-Euro smoothing, the CLI and the synthetic videos."""

import json
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("av")

from vitpose_hf.cli import build_pipeline, main  # noqa: E402
from vitpose_hf.data.synthetic_video import generate_synthetic_video  # noqa: E402
from vitpose_hf.keypoints import get_layout  # noqa: E402
from vitpose_hf.video.predict import load_frame_detections, track_video  # noqa: E402
from vitpose_hf.video.smoothing import OneEuroFilter  # noqa: E402
from vitpose_hf.video.tracking import PoseTracker, pose_guided_box  # noqa: E402
from vitpose_hf.video_io import VideoWriter, is_video_path, iter_frames, read_video_info  # noqa: E402

SIGMAS = get_layout("coco").oks_sigmas
# A standing figure's 17 COCO keypoints in a 40x100 box, relative to its top-left corner.
FIGURE = np.array([[20, 8], [22, 6], [18, 6], [25, 8], [15, 8], [30, 25], [10, 25], [33, 45], [7, 45], [35, 62],
                   [5, 62], [27, 60], [13, 60], [28, 80], [12, 80], [28, 98], [12, 98]], dtype=np.float64)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 14-frame synthetic video (160x224) with known tracks."""
    folder = tmp_path_factory.mktemp("clip")
    return generate_synthetic_video(folder, 14, seed=5, size=(160, 224), num_people=3)


@pytest.fixture(scope="module")
def pose():
    return build_pipeline(None, "cpu", 16)  # the embedded model


def _person(x: float, y: float, scale: float = 1.0) -> dict:
    keypoints = FIGURE * scale + [x, y]
    return {"keypoints": keypoints.tolist(), "scores": [0.9] * 17, "bbox": [x, y, x + 40 * scale, y + 100 * scale]}


def test_reader_writer_round_trip(tmp_path):
    path = tmp_path / "ramp.mp4"
    with VideoWriter(path, fps=Fraction(30000, 1001)) as writer:
        for i in range(12):
            writer.write(np.full((48, 64, 3), 10 + 20 * i, dtype=np.uint8))
    info = read_video_info(path)
    assert (info.width, info.height, info.fps, info.num_frames) == (64, 48, Fraction(30000, 1001), 12)
    frames = list(iter_frames(path))
    assert [index for index, _, _ in frames] == list(range(12))
    assert frames[3][1] == pytest.approx(3 * 1001 / 30000, abs=1e-3)
    assert frames[5][2].size == (64, 48)
    assert abs(np.asarray(frames[5][2], dtype=float).mean() - 110) < 3  # the frame written 6th, in order
    with pytest.raises(ValueError, match="Frame 12 is 32x32"):
        with VideoWriter(tmp_path / "bad.mp4") as writer:
            for _ in range(12):
                writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video_info(tmp_path / "missing.mp4")
    assert is_video_path("a/b/Clip.MOV") and not is_video_path("a.png")


def test_tracker_keeps_ids_and_gives_new_ones_to_entrants():
    tracker = PoseTracker(SIGMAS)
    seen = {}
    for frame in range(20):
        # Two people walking towards each other (A left to right, B right to left), given in shuffled order.
        a, b = _person(20 + 4 * frame, 50), _person(200 - 4 * frame, 60, 1.1)
        people = [("a", a), ("b", b)]
        if frame >= 8:
            people.append(("c", _person(300, 40 + frame)))  # enters on frame 8
        order = np.random.default_rng(frame).permutation(len(people))
        ids = tracker.update([people[i][1] for i in order], frame)
        for position, track_id in zip(order, ids):
            seen.setdefault(people[position][0], set()).add(track_id)
    assert seen == {"a": {0}, "b": {1}, "c": {2}}


def test_tracker_frees_ids_of_leavers_and_never_reuses_them():
    tracker = PoseTracker(SIGMAS, max_missed=3)
    for frame in range(5):
        tracker.update([_person(10 + frame, 10), _person(200, 10)], frame)
    assert tracker.active_ids() == [0, 1]
    for frame in range(5, 9):  # the first person left
        assert tracker.update([_person(200, 10)], frame) == [1]
    assert tracker.active_ids() == [1]
    # Someone new where the leaver was gets a fresh id, not 0.
    assert tracker.update([_person(14, 10), _person(200, 10)], 9) == [2, 1]


def test_carried_people_continue_their_track_and_motion_is_followed():
    tracker = PoseTracker(SIGMAS)
    for frame in range(3):  # moving 10 px per frame
        tracker.update([_person(10 + 10 * frame, 10), _person(300, 10)], frame)
    boxes, ids = tracker.carried_boxes(3)
    assert ids == [0, 1]
    assert (boxes[0, 0] + boxes[0, 2]) / 2 == pytest.approx(20 + 40, abs=1e-6)  # carried to where it will be
    # The people found in carried boxes continue the tracks the boxes came from, whatever their order.
    assert tracker.update([_person(300, 10), _person(40, 10)], 3, track_ids=[1, 0]) == [1, 0]
    # A fast mover missed for 3 frames is still matched where its motion puts it.
    assert tracker.update([_person(300, 10)], 4) == [1]
    assert tracker.update([_person(10 + 10 * 8, 10), _person(300, 10)], 8) == [0, 1]


def test_motion_comes_from_detections_not_from_boxes_carried_between_them():
    """Detections every 5th frame: when the carried box of a walker slides onto a person standing nearby, the
    next detection frame still finds the walker where its detections say it goes, and the standing person is new."""
    tracker = PoseTracker(SIGMAS)

    def walker(frame: int) -> dict:
        return _person(10 + 4 * frame, 20)

    for frame in range(10):
        if frame % 5 == 0:
            assert tracker.update([walker(frame)], frame) == [0]
        else:  # carried: on the walker's path until frame 5, then on the standing person at x = 120
            assert tracker.update([walker(frame) if frame < 5 else _person(120, 20)], frame, track_ids=[0]) == [0]
    assert tracker.update([_person(120, 20), walker(10)], 10) == [1, 0]


def test_pose_guided_boxes_carried_on_frames_without_detections():
    tracker = PoseTracker(SIGMAS)
    person = _person(50, 20)
    person["scores"][15:] = [0.1, 0.1]  # ankles unsure: not part of the box
    tracker.update([person], 0)
    carried, ids = tracker.carried_boxes(1, image_size=(120, 200))
    assert ids == [0]
    keypoints = np.asarray(person["keypoints"])[:15]
    low, high = keypoints.min(axis=0), keypoints.max(axis=0)
    center, half = (low + high) / 2, (high - low) / 2 * 1.25
    np.testing.assert_allclose(carried, [np.concatenate([center - half, center + half])])
    assert tracker.carried_boxes(3)[0].shape == (0, 4)  # only people seen on the previous frame are followed
    assert pose_guided_box(np.zeros((17, 2)), np.zeros(17)) is None


def test_one_euro_filter_matches_its_formula():
    min_cutoff, beta, d_cutoff = 1.2, 0.3, 1.0
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.02, 0.05, 30))
    values = np.cumsum(rng.normal(0, 2, (30, 3)), axis=0)
    filtered = OneEuroFilter(min_cutoff, beta, d_cutoff)
    out = [filtered(v, t) for v, t in zip(values, times)]

    def alpha(cutoff, dt):
        r = 2 * math.pi * cutoff * dt
        return r / (r + 1)

    for j in range(3):
        x_hat, dx_hat = values[0, j], 0.0
        assert out[0][j] == x_hat
        for i in range(1, 30):
            dt = times[i] - times[i - 1]
            dx = (values[i, j] - x_hat) / dt
            dx_hat = alpha(d_cutoff, dt) * dx + (1 - alpha(d_cutoff, dt)) * dx_hat
            a = alpha(min_cutoff + beta * abs(dx_hat), dt)
            x_hat = a * values[i, j] + (1 - a) * x_hat
            assert out[i][j] == pytest.approx(x_hat, rel=1e-9)
    with pytest.raises(ValueError, match="increasing time"):
        filtered(values[0], times[-1])


def test_synthetic_video_annotations(clip):
    truth = json.loads(clip["annotations"].read_text())
    assert [image["id"] for image in truth["images"]] == list(range(14))
    assert len(list(iter_frames(clip["video"]))) == 14
    assert all(isinstance(ann["track_id"], int) and 0 <= ann["image_id"] < 14 for ann in truth["annotations"])
    assert len({ann["track_id"] for ann in truth["annotations"]}) >= 2
    for ann in truth["annotations"]:
        assert len(ann["keypoints"]) == 51 and ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3])
    detections = json.loads(clip["detections"].read_text())
    assert detections and all(set(d) == {"image_id", "category_id", "bbox", "score"} for d in detections)
    per_frame = load_frame_detections(clip["detections"])
    assert set(per_frame) <= set(range(14)) and all(boxes.shape[1] == 5 for boxes in per_frame.values())


def test_tracking_on_a_generated_clip_with_the_embedded_model(clip, pose):
    """Each true person mostly keeps one predicted id (a distinct one), and keypoints land near the truth."""
    from vitpose_hf.cli import coco_results
    from vitpose_hf.evaluation import coco_keypoint_eval

    truth = json.loads(clip["annotations"].read_text())
    frames = list(track_video(pose, clip["video"], boxes=clip["detections"], detect_every=2, batch_frames=4))
    assert [frame.index for frame in frames] == list(range(14))
    assert any(not frame.detected for frame in frames) and all(frame.people for frame in frames)
    results = [r for frame in frames for r in coco_results(frame.people, frame.index)]
    assert coco_keypoint_eval(truth, results, SIGMAS)["AP"] > 0.4
    # Identity: on each frame, the prediction nearest to a true person gives that person's id there.
    ids: dict[int, list] = {}
    for frame in frames:
        for ann in (a for a in truth["annotations"] if a["image_id"] == frame.index and a["num_keypoints"] >= 8):
            gt = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
            labelled = gt[:, 2] > 0
            distances = [np.linalg.norm(np.asarray(p["keypoints"])[labelled] - gt[labelled, :2], axis=1).mean()
                         for p in frame.people]
            ids.setdefault(ann["track_id"], []).append(frame.people[int(np.argmin(distances))]["track_id"])
    majority = {track: Counter(found).most_common(1)[0] for track, found in ids.items()}
    assert len(ids) >= 2 and len({track_id for track_id, _ in majority.values()}) == len(ids), ids
    assert all(count >= 0.75 * len(ids[track]) for track, (_, count) in majority.items()), ids


def _iou(a: list, b: list) -> float:
    """IoU of two xyxy boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0) * max(height, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _pair_by_iou(truth_boxes: list, boxes: list) -> dict[int, int]:
    """Greedy one-to-one pairs (truth index -> box index), best IoU first, IoU >= 0.5 only."""
    pairs = sorted(((_iou(t, b), i, j) for i, t in enumerate(truth_boxes) for j, b in enumerate(boxes)), reverse=True)
    matched: dict[int, int] = {}
    for iou, i, j in pairs:
        if iou >= 0.5 and i not in matched and j not in matched.values():
            matched[i] = j
    return matched


def test_every_true_track_keeps_one_id_with_detections_on_every_frame(clip, pose):
    """Consistency by box: per frame, outputs and true people pair by the IoU (>= 0.5) of the output's detection box
    with the annotated box; a true track's frame is kept when its output has the track's majority id. The frames
    that count are those where the person has a labelled keypoint and is among the given detections."""
    truth = json.loads(clip["annotations"].read_text())
    given: dict[int, list] = {}
    for d in json.loads(clip["detections"].read_text()):
        x, y, w, h = d["bbox"]
        given.setdefault(d["image_id"], []).append([x, y, x + w, y + h])
    frames = list(track_video(pose, clip["video"], boxes=clip["detections"], detect_every=1, batch_frames=7,
                              flip_test=False))
    found: dict[int, list] = {}
    for frame in frames:
        anns = [a for a in truth["annotations"] if a["image_id"] == frame.index and a["num_keypoints"] > 0]
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        detected = _pair_by_iou(boxes, given.get(frame.index, []))
        followed = _pair_by_iou(boxes, [person["bbox"] for person in frame.people])
        for i, ann in enumerate(anns):
            if i in detected:
                found.setdefault(ann["track_id"], []).append(
                    frame.people[followed[i]]["track_id"] if i in followed else None)
    assert len(found) >= 2 and sum(map(len, found.values())) >= 20
    majorities = []
    for track, ids in found.items():
        majority, count = Counter(i for i in ids if i is not None).most_common(1)[0]
        assert count >= 0.9 * len(ids), (track, ids)
        majorities.append(majority)
    assert len(set(majorities)) == len(majorities), found  # one id per true person


def test_crossing_people_keep_ids_through_jittered_boxes_and_collapsed_poses():
    """Two people cross slowly (2 px per frame) while their detections jitter by up to 4 px, as a detector's do, and
    while they overlap both crops find the front person's pose: the velocity fitted over recent boxes, not the last
    step's noise, predicts where each goes, so ids hold (a single frame may swap, the identity never does)."""
    for seed in range(10):
        rng = np.random.default_rng(seed)
        tracker = PoseTracker(SIGMAS)
        kept = 0
        for frame in range(40):
            a, b = _person(60 + 2 * frame, 50), _person(140 - 2 * frame, 54)
            a["bbox"] = (np.asarray(a["bbox"]) + rng.uniform(-4, 4, 4)).tolist()
            b["bbox"] = (np.asarray(b["bbox"]) + rng.uniform(-4, 4, 4)).tolist()
            if abs(4 * frame - 80) < 30:
                b["keypoints"] = a["keypoints"]
            kept += tracker.update([a, b], frame) == [0, 1]
        assert kept >= 36, (seed, kept)


def test_cli_writes_video_and_jsonl_with_every_frame(clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(clip["video"]), "--boxes", str(clip["detections"]), "--detect-every", "3",
                 "--smooth", "--no-flip", "--output-dir", str(out)]) == 0
    assert "14 frames" in capsys.readouterr().out
    info = read_video_info(out / "video.mp4")
    assert (info.num_frames, info.fps, info.size) == (14, Fraction(10), (160, 224))
    records = [json.loads(line) for line in (out / "video.jsonl").read_text().splitlines()]
    assert [record["frame"] for record in records] == list(range(14))
    assert records[3]["time"] == pytest.approx(0.3)
    person = records[0]["people"][0]
    assert set(person) == {"track_id", "keypoints", "scores", "labels", "bbox", "box_score"}
    assert len(person["keypoints"]) == 17 and person["labels"][0] == "nose" and isinstance(person["track_id"], int)
    assert main(["predict", str(tmp_path / "none.mp4"), "--output-dir", str(out)]) == 2
