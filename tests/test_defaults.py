"""Defaults: the Hub's ViTPose-B and person detector when cached or reachable, else the embedded model with a warning.

The Hub cache is simulated: tiny models saved under the layout huggingface_hub writes
(`models--org--name/refs/main` naming a `snapshots/<commit>/` folder). Nothing reaches the network.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants as hub_constants
from PIL import Image
from support.detectors import save_tiny_rt_detr, tiny_detector
from support.models import randomize, tiny_config_kwargs
from transformers import pipeline
from transformers.models.vitpose import VitPoseImageProcessorPil

from vitpose_hf import (
    VitPoseConfig,
    VitPoseImageProcessor,
    VitPoseModel,
    defaults,
    export_to_transformers,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
WIDTH, HEIGHT = 160, 120


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(defaults, "model_info", _no_network)
    return cache


def _no_network(*args, **kwargs):
    raise AssertionError("the Hub was asked although the cache or offline mode should have answered")


def cached_snapshot_folder(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of `repo_id`'s main revision in `cache`, created as huggingface_hub lays it out."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot


def image() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def builtin_pose_model() -> VitPoseModel:
    """A tiny ViTPose in the simple-decoder shape of usyd-community/vitpose-base-simple."""
    torch.manual_seed(0)
    return randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs(decoder="simple")))).eval()


def test_cached_hub_model_is_the_default(hub_cache, builtin_pose_model, recwarn):
    snapshot = cached_snapshot_folder(hub_cache, defaults.DEFAULT_MODEL_ID)
    export_to_transformers(builtin_pose_model, snapshot)  # the built-in format, as on the Hub
    VitPoseImageProcessorPil().save_pretrained(snapshot)

    assert defaults.default_model_path() == str(snapshot)
    pose = pipeline("keypoint-detection", device="cpu")
    assert not [w for w in recwarn if "synthetic" in str(w.message)]
    assert pose.model.name_or_path == str(snapshot)
    assert isinstance(pose.image_processor, VitPoseImageProcessor)  # ours decodes, built from the checkpoint's
    pixels = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        torch.testing.assert_close(pose.model(pixels).heatmaps, builtin_pose_model(pixels).heatmaps)
    people = pose(image(), boxes=[[10, 10, 60, 90]])
    assert len(people) == 1 and len(people[0]["keypoints"]) == 17


def test_partial_download_is_not_used(hub_cache):
    snapshot = cached_snapshot_folder(hub_cache, defaults.DEFAULT_MODEL_ID)
    (snapshot / "config.json").write_text("{}")  # the weights never arrived
    assert defaults.cached_snapshot(defaults.DEFAULT_MODEL_ID) is None


def test_offline_without_cache_falls_back_to_the_embedded_model_and_says_how_to_get_a_real_one(hub_cache):
    with pytest.warns(UserWarning, match="synthetic figures") as caught:
        assert defaults.default_model_path() == defaults.embedded_model_path()
    message = str(caught[0].message)
    assert f"hf download {defaults.DEFAULT_MODEL_ID}" in message and "model=" in message
    assert defaults.default_detector() is None


def test_online_the_hub_decides(hub_cache, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    asked = []
    monkeypatch.setattr(defaults, "model_info", lambda repo_id, timeout: asked.append(repo_id))
    assert defaults.default_model_path() == defaults.DEFAULT_MODEL_ID  # downloaded by from_pretrained
    assert defaults.default_detector() == defaults.DEFAULT_DETECTOR_ID
    assert asked == [defaults.DEFAULT_MODEL_ID, defaults.DEFAULT_DETECTOR_ID]

    def unreachable(repo_id, timeout):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(defaults, "model_info", unreachable)
    with pytest.warns(UserWarning, match="synthetic figures"):
        assert defaults.default_model_path() == defaults.embedded_model_path()
    assert defaults.default_detector() is None


def test_cached_detector_finds_the_people_when_no_boxes_are_given(hub_cache, builtin_pose_model, recwarn):
    snapshot = cached_snapshot_folder(hub_cache, defaults.DEFAULT_DETECTOR_ID)
    cx, cy, w, h = 0.5, 0.5, 0.4, 0.8
    tiny_detector(finds_people=True, box=(cx, cy, w, h)).save_pretrained(snapshot)  # two tokens, both this person
    pose = pipeline("keypoint-detection", model=builtin_pose_model, device="cpu")

    people = pose(image())
    expected = [(cx - w / 2) * WIDTH, (cy - h / 2) * HEIGHT, (cx + w / 2) * WIDTH, (cy + h / 2) * HEIGHT]
    assert len(people) == 2
    for person in people:
        np.testing.assert_allclose(person["bbox"], expected, atol=1.0)
        assert person["box_score"] > 0.99
    assert not [w for w in recwarn if "whole image" in str(w.message)]


def test_cached_rt_detr_is_the_default_detector(hub_cache, builtin_pose_model):
    snapshot = cached_snapshot_folder(hub_cache, defaults.DEFAULT_DETECTOR_ID)
    save_tiny_rt_detr(snapshot)
    assert defaults.default_detector() == str(snapshot)
    picture = image()
    # What the detector itself says, asked directly: its "person" boxes (degenerate ones have nothing to crop).
    detections = pipeline("object-detection", model=str(snapshot), device="cpu")(picture, threshold=0.0)
    expected = [[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in detections if d["label"] == "person"]
    expected = [box for box in expected if box[2] > box[0] and box[3] > box[1]]
    assert expected

    pose = pipeline("keypoint-detection", model=builtin_pose_model, device="cpu")
    people = pose(picture, detector_threshold=0.0, flip_test=False)
    assert [person["bbox"] for person in people] == expected


def test_without_any_detector_the_whole_image_is_one_person_with_one_warning_per_call(hub_cache, builtin_pose_model):
    pose = pipeline("keypoint-detection", model=builtin_pose_model, device="cpu")
    for _ in range(2):
        with pytest.warns(UserWarning) as caught:
            people = pose([image(), image()])
        fallbacks = [w for w in caught if "no boxes and no detector" in str(w.message)]
        assert len(fallbacks) == 1 and "whole image as one person" in str(fallbacks[0].message)
        assert [p[0]["bbox"] for p in people] == [[0, 0, WIDTH, HEIGHT]] * 2


def test_given_boxes_need_no_detector_and_no_warning(hub_cache, builtin_pose_model, recwarn):
    pose = pipeline("keypoint-detection", model=builtin_pose_model, device="cpu")
    assert len(pose(image(), boxes=[[10, 10, 60, 90]])) == 1
    assert not [w for w in recwarn if "no boxes and no detector" in str(w.message)]


def test_model_cards_say_what_happens_without_boxes():
    """The cards must not promise a detector: without one available the whole image is one person."""
    repo = Path(__file__).resolve().parents[1]
    for card in (repo / "model_cards" / "template.md", defaults.EMBEDDED_MODEL_DIR / "README.md"):
        text = " ".join(card.read_text().split())
        assert defaults.DEFAULT_DETECTOR_ID in text and "whole image" in text and "warn" in text, card
        assert "a person detector finds the boxes when none are given" not in text, card
