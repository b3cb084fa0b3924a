"""The synthetic pose generator: valid COCO files, joints drawn where annotated, honest visibility flags."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from vitpose_hf.data.figures import (
    MARKER_COLORS,
    body_point_names,
    keypoint_colors,
    render_person,
    render_scene,
    sample_person,
)
from vitpose_hf.data.synthetic import generate_synthetic_dataset, main
from vitpose_hf.keypoints import KeypointLayout, get_layout


def _unobstructed(xy: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Joints whose marker centre no later-drawn marker covers (markers are drawn in keypoint order)."""
    ok = np.ones(len(xy), dtype=bool)
    for k in range(len(xy)):
        later = np.arange(len(xy)) > k
        dist = np.linalg.norm(xy - xy[k], axis=1)
        ok[k] = not np.any(later & (dist <= radius + 1.5))
    return ok


def _marker_radii(person, layout) -> np.ndarray:
    face = {"nose", "left_eye", "right_eye", "left_ear", "right_ear"}
    return np.array([person.face_marker_radius if n in face else person.marker_radius for n in body_point_names(layout)])


@pytest.mark.parametrize("layout", ["coco", "mpii", "aic", "crowdpose"])
def test_rendered_joints_have_their_marker_colour(layout):
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(4):
        person = sample_person(rng, height=300)
        x0, y0, x1, y1 = person.extent()
        person.translate(20 - x0, 20 - y0)
        image = Image.new("RGB", (int(x1 - x0) + 40, int(y1 - y0) + 40), (128, 128, 128))
        render_person(image, person, layout)
        pixels = np.asarray(image)
        xy = person.keypoints(layout)
        ok = _unobstructed(xy, _marker_radii(person, layout))
        hidden_face = np.array([not person.facing_front and n in ("nose", "left_eye", "right_eye")
                                for n in body_point_names(layout)])
        colors = keypoint_colors(layout)
        for k in np.flatnonzero(ok & ~hidden_face):
            x, y = np.round(xy[k]).astype(int)
            assert tuple(pixels[y, x]) == colors[k], f"keypoint {get_layout(layout).keypoints[k]}"
            checked += 1
    assert checked >= 4 * get_layout(layout).num_keypoints * 0.6


def test_marker_colours_are_distinct():
    colors = list(MARKER_COLORS.values())
    assert len(set(colors)) == len(colors)
    assert (0, 0, 0) not in colors


def test_scene_visibility_matches_pixels():
    """v=2 joints show their own marker colour; v=1 joints are inside the image; v=0 joints are stored as (0, 0)."""
    layout = get_layout("coco")
    colors = np.array(keypoint_colors(layout))
    rng = np.random.default_rng(0)
    counts = np.zeros(3, dtype=int)
    matched = total_visible = 0
    for _ in range(12):
        image, people = render_scene(rng, layout, (256, 256), max_people=3, occluder_prob=1.0)
        pixels = np.asarray(image).astype(int)
        for person in people:
            kp = person["keypoints"]
            v = kp[:, 2].astype(int)
            counts += np.bincount(v, minlength=3)
            assert np.all(kp[v == 0, :2] == 0)
            inside = (kp[:, 0] >= 0) & (kp[:, 0] <= 255) & (kp[:, 1] >= 0) & (kp[:, 1] <= 255)
            assert np.all(inside[v > 0])
            for k in np.flatnonzero(v == 2):
                x, y = np.round(kp[k, :2]).astype(int)
                total_visible += 1
                matched += int(np.array_equal(pixels[y, x], colors[k]))
            for k in np.flatnonzero(v == 1):
                x, y = np.round(kp[k, :2]).astype(int)
                assert not np.array_equal(pixels[y, x], colors[k])
            x, y, w, h = person["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 256 + 1e-6 and y + h <= 256 + 1e-6
            labelled = kp[v > 0, :2]
            assert np.all(labelled >= [x - 1, y - 1]) and np.all(labelled <= [x + w + 1, y + h + 1])
            assert 0 < person["area"] <= w * h + 1
    assert counts[1] > 0 and counts[0] > 0 and counts[2] > 10 * counts[1] / 2
    # Markers of one person can overlap (eyes near the nose on small heads); nearly all visible joints show theirs.
    assert matched >= 0.85 * total_visible


def test_generated_dataset_loads_with_pycocotools(tmp_path):
    path = generate_synthetic_dataset(tmp_path / "syn", num_images=6, layout="coco", seed=1, image_size=(160, 120),
                                      image_format="png")
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 6
    category = coco.loadCats(coco.getCatIds())[0]
    layout = get_layout("coco")
    assert category["keypoints"] == list(layout.keypoints)
    assert category["skeleton"] == [[a + 1, b + 1] for a, b in layout.skeleton]  # 1-based like COCO
    assert len(coco.getAnnIds()) >= 6
    for ann in coco.loadAnns(coco.getAnnIds()):
        kp = np.array(ann["keypoints"]).reshape(-1, 3)
        assert kp.shape == (17, 3) and set(kp[:, 2].tolist()) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
        assert ann["iscrowd"] == 0 and ann["category_id"] == 1 and len(ann["bbox"]) == 4
        info = coco.loadImgs(ann["image_id"])[0]
        with Image.open(tmp_path / "syn" / "images" / info["file_name"]) as image:
            assert image.size == (info["width"], info["height"]) == (160, 120)
    # pycocotools' own mask path works on the annotations (segmentation is the box polygon).
    assert coco.annToMask(coco.loadAnns(coco.getAnnIds())[0]).shape == (120, 160)


def test_generation_is_reproducible_and_prefix_stable(tmp_path):
    a = json.loads(generate_synthetic_dataset(tmp_path / "a", 3, seed=5).read_text())
    b = json.loads(generate_synthetic_dataset(tmp_path / "b", 4, seed=5).read_text())
    c = json.loads(generate_synthetic_dataset(tmp_path / "c", 3, seed=6).read_text())
    first_three = [ann for ann in b["annotations"] if ann["image_id"] <= 3]
    assert a["annotations"] == first_three
    assert a["annotations"] != c["annotations"]
    assert (tmp_path / "a/images/000000.jpg").read_bytes() == (tmp_path / "b/images/000000.jpg").read_bytes()


def test_command_line(tmp_path, capsys):
    main(["--output-dir", str(tmp_path / "cli"), "--num-images", "2", "--layout", "mpii", "--seed", "0",
          "--image-size", "128", "96", "--max-people", "2"])
    data = json.loads((tmp_path / "cli" / "annotations.json").read_text())
    assert data["categories"][0]["keypoints"] == list(get_layout("mpii").keypoints)
    assert all(len(ann["keypoints"]) == 16 * 3 for ann in data["annotations"])
    assert "images/s" in capsys.readouterr().out


def test_non_human_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="L_Eye"):
        generate_synthetic_dataset(tmp_path, 1, layout="ap10k")
    custom = KeypointLayout("hands_only", ("left_wrist", "right_wrist"), flip_pairs=((0, 1),))
    path = generate_synthetic_dataset(tmp_path / "custom", 2, layout=custom)
    assert json.loads(path.read_text())["categories"][0]["keypoints"] == ["left_wrist", "right_wrist"]
