import numpy as np
import pytest
import torch
from PIL import Image

from vitpose_hf import KeypointLayout, VitPoseConfig, get_layout
from vitpose_hf.visualization import (
    draw_pose,
    limb_colors,
    resolve_skeleton,
    to_supervision_keypoints,
)

BLACK = (0, 0, 0)


def _person(keypoints, scores, bbox=None):
    return {"keypoints": keypoints, "scores": scores, "labels": [str(i) for i in range(len(scores))], "bbox": bbox,
            "box_score": 1.0}


def test_limb_is_drawn_in_its_colour_and_low_scores_are_hidden():
    image = Image.new("RGB", (100, 80), BLACK)
    people = [_person([[10, 40], [90, 40], [50, 10]], [0.9, 0.8, 0.1])]
    skeleton = [(0, 1), (1, 2)]
    drawn = np.asarray(draw_pose(image, people, skeleton, threshold=0.5, radius=3, line_width=3, draw_boxes=False))
    colours = limb_colors(2)
    # Midpoint of the visible limb 0-1 carries limb 0's colour.
    assert tuple(drawn[40, 50]) == colours[0]
    # Keypoint 2 scores below the threshold: neither it nor limb 1-2 is drawn.
    assert tuple(drawn[10, 50]) == BLACK
    assert tuple(drawn[25, 70]) == BLACK  # midpoint of limb 1-2
    # Joints take the colour of their first limb, with a dark outline (centre pixel is the fill).
    assert tuple(drawn[40, 10]) == colours[0]
    # The input image is left untouched.
    assert np.asarray(image).max() == 0


def test_box_outline_and_tensor_results():
    image = Image.new("RGB", (64, 64), BLACK)
    people = [_person(torch.tensor([[20.0, 20.0], [40.0, 40.0]]), torch.tensor([0.9, 0.9]), bbox=[5, 5, 58, 58])]
    drawn = np.asarray(draw_pose(image, people, [(0, 1)], radius=2, line_width=2, draw_boxes=True))
    assert tuple(drawn[5, 30]) == (255, 255, 255)  # top edge of the box
    assert tuple(drawn[30, 30]) == limb_colors(1)[0]


def test_skeleton_from_config_and_layout():
    config = VitPoseConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, keypoint_heads=["coco", "mpii"])
    assert resolve_skeleton(config) == [tuple(e) for e in get_layout("coco").skeleton]
    assert resolve_skeleton(config, dataset="mpii") == [tuple(e) for e in get_layout("mpii").skeleton]
    assert resolve_skeleton(get_layout("aic")) == [tuple(e) for e in get_layout("aic").skeleton]


def test_limb_colours_are_distinct():
    colours = limb_colors(19)
    assert len(set(colours)) == 19
    assert all(0 <= c <= 255 for colour in colours for c in colour)


def test_bad_inputs_name_the_problem():
    image = Image.new("RGB", (32, 32))
    with pytest.raises(ValueError, match=r"Skeleton edge \(0, 5\) does not fit person 0"):
        draw_pose(image, [_person([[1, 1], [2, 2]], [1.0, 1.0])], [(0, 5)])
    with pytest.raises(ValueError, match="Person 0 has 2 keypoints but 3 scores"):
        draw_pose(image, [_person([[1, 1], [2, 2]], [1.0, 1.0, 1.0])], [(0, 1)])
    with pytest.raises(ValueError, match="Skeleton edge 1"):
        resolve_skeleton([(0, 1), (2,)])


def test_supervision_arrays():
    people = [_person([[1, 2], [3, 4], [5, 6]], [0.1, 0.2, 0.3]), _person([[7, 8], [9, 10], [11, 12]], [0.4, 0.5, 0.6])]
    arrays = to_supervision_keypoints(people)
    assert arrays["xy"].shape == (2, 3, 2) and arrays["xy"].dtype == np.float32
    assert arrays["confidence"].shape == (2, 3) and arrays["confidence"].dtype == np.float32
    assert arrays["class_id"].tolist() == [0, 0]
    np.testing.assert_array_equal(arrays["xy"][1, 2], [11, 12])
    np.testing.assert_allclose(arrays["confidence"][0], [0.1, 0.2, 0.3], rtol=1e-6)

    empty = to_supervision_keypoints([])
    assert empty["xy"].shape == (0, 0, 2) and empty["confidence"].shape == (0, 0) and empty["class_id"].shape == (0,)

    with pytest.raises(ValueError, match="Person 1 has 2 keypoints"):
        to_supervision_keypoints([people[0], _person([[1, 2], [3, 4]], [0.1, 0.2])])


def test_threshold_filtered_people_are_put_back_at_their_layout_positions():
    layout = KeypointLayout(name="tri", keypoints=("a", "b", "c"), skeleton=((0, 1), (1, 2), (0, 2)))
    image = Image.new("RGB", (60, 60), BLACK)
    full = [_person([[10, 10], [50, 10], [30, 50]], [0.9, 0.0, 0.8], bbox=[0, 0, 59, 59])]
    full[0]["labels"] = ["a", "b", "c"]
    filtered = [{"keypoints": [[10, 10], [30, 50]], "scores": [0.9, 0.8], "labels": ["a", "c"], "bbox": [0, 0, 59, 59]}]
    expected = np.asarray(draw_pose(image, full, layout, threshold=0.5))
    np.testing.assert_array_equal(np.asarray(draw_pose(image, filtered, layout, threshold=0.5)), expected)
    assert tuple(expected[30, 20]) == limb_colors(3)[2]  # limb a-c is drawn

    arrays = to_supervision_keypoints(filtered, layout)
    np.testing.assert_array_equal(arrays["xy"][0], [[10, 10], [0, 0], [30, 50]])
    np.testing.assert_allclose(arrays["confidence"][0], [0.9, 0.0, 0.8], rtol=1e-6)
    assert to_supervision_keypoints([], layout)["xy"].shape == (0, 3, 2)

    with pytest.raises(ValueError, match="keypoint 'd', which the skeleton's layout does not know"):
        draw_pose(image, [{"keypoints": [[1, 1]], "scores": [1.0], "labels": ["d"]}], layout)
