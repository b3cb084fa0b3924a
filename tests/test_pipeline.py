"""The "keypoint-detection" pipeline, end to end, with tiny local models (no network)."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from support.detectors import tiny_detector
from support.models import tiny_config_kwargs
from transformers import pipeline

import vitpose_hf  # noqa: F401  (registers the task)
from vitpose_hf import (
    VitPoseConfig,
    VitPoseEstimatorOutput,
    VitPoseModel,
    defaults,
    get_layout,
)
from vitpose_hf.image_processing_vitpose import VitPoseImageProcessor
from vitpose_hf.pipeline import KeypointDetectionPipeline

WIDTH, HEIGHT = 240, 200
# Two people (xywh boxes) with a bright disc each; the padded crop of one box never reaches the other's disc.
BOXES = [[20.0, 30.0, 60.0, 120.0], [130.0, 40.0, 70.0, 130.0]]
DISCS = [(50.0, 70.0), (170.0, 120.0)]


class BrightSpotModel(VitPoseModel):
    """A stand-in ViTPose whose every heatmap peaks where its crop is brightest.

    The heatmap grid samples the crop at pixel `i * (W_in - 1) / (W_hm - 1)` (UDP, align_corners=True), so decoding
    must bring each keypoint back onto the bright disc of its person: a check of cropping, batching, flip test and
    decoding together against positions known from how the image was drawn.
    """

    def forward(self, pixel_values, dataset_index=None, **kwargs):
        index = self.resolve_dataset_index(dataset_index, pixel_values.shape[0], pixel_values.device)
        num_keypoints = self.config.layouts[int(index[0])].num_keypoints
        brightness = F.avg_pool2d(pixel_values.mean(1, keepdim=True), 5, stride=1, padding=2, count_include_pad=False)
        maps = F.interpolate(brightness, size=self.config.heatmap_size, mode="bilinear", align_corners=True)
        maps = torch.exp(2.0 * (maps - maps.amax(dim=(2, 3), keepdim=True)))
        return VitPoseEstimatorOutput(heatmaps=maps.expand(-1, num_keypoints, -1, -1).contiguous())


def disc_image() -> Image.Image:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    canvas = np.zeros((HEIGHT, WIDTH), dtype=np.float64)
    for cx, cy in DISCS:
        canvas = np.maximum(canvas, np.clip(7.0 - np.hypot(x - cx, y - cy), 0.0, 1.0))
    return Image.fromarray((canvas * 255).astype(np.uint8)).convert("RGB")


def random_image(seed: int, size=(WIDTH, HEIGHT)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return VitPoseModel(VitPoseConfig(**tiny_config_kwargs())).eval()


@pytest.fixture(scope="module")
def pose(tiny_model):
    return pipeline("keypoint-detection", model=tiny_model, device="cpu")


def assert_plain(value):
    """Only JSON types: the results can be dumped as they are."""
    assert json.loads(json.dumps(value)) == value


# Given boxes ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flip_test", [True, False])
def test_keypoints_land_on_each_persons_spot(flip_test):
    model = BrightSpotModel(VitPoseConfig(**tiny_config_kwargs())).eval()
    pose = pipeline("keypoint-detection", model=model, device="cpu")
    people = pose(disc_image(), boxes=BOXES, flip_test=flip_test)
    assert len(people) == 2
    coco = get_layout("coco")
    for person, box, (cx, cy) in zip(people, BOXES, DISCS):
        assert person["labels"] == list(coco.keypoints)
        assert len(person["keypoints"]) == len(person["scores"]) == 17
        keypoints = np.asarray(person["keypoints"])
        assert np.all(np.hypot(keypoints[:, 0] - cx, keypoints[:, 1] - cy) < 2.0), keypoints
        assert person["bbox"] == [box[0], box[1], box[0] + box[2], box[1] + box[3]]
        assert person["box_score"] == 1.0
        assert np.allclose(person["scores"], 1.0, atol=0.05)
    assert_plain(people)


def test_given_boxes_give_k_keypoints_inside_the_image(pose):
    image = random_image(0)
    people = pose(image, boxes=BOXES)
    assert len(people) == len(BOXES)
    for person in people:
        keypoints = np.asarray(person["keypoints"])
        assert keypoints.shape == (17, 2)
        assert np.all((keypoints >= 0) & (keypoints <= [WIDTH, HEIGHT]))
        assert all(isinstance(v, float) for v in person["scores"])
    assert_plain(people)


def test_xyxy_boxes_and_box_scores(pose):
    image = random_image(1)
    xywh = pose(image, boxes=BOXES)
    xyxy_boxes = [[x, y, x + w, y + h, 0.7] for x, y, w, h in BOXES]  # fifth column: box score
    xyxy = pose(image, boxes=xyxy_boxes, box_format="xyxy")
    for a, b in zip(xywh, xyxy):
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-4)
        assert a["bbox"] == b["bbox"]
        assert b["box_score"] == pytest.approx(0.7)


def test_whole_image_is_one_box_without_boxes_or_detector(pose):
    people = pose(random_image(2, size=(64, 96)))
    assert len(people) == 1
    assert people[0]["bbox"] == [0.0, 0.0, 64.0, 96.0]
    assert len(people[0]["keypoints"]) == 17


def test_empty_box_list_means_nobody(pose):
    assert pose(random_image(3), boxes=[]) == []
    assert pose([random_image(3), random_image(4)], boxes=[[], BOXES[:1]])[0] == []


def test_inputs_path_numpy_pil_and_tensors(pose, tmp_path):
    image = random_image(5)
    path = tmp_path / "person.png"
    image.save(path)
    from_pil = pose(image, boxes=BOXES)
    for other in (str(path), path, np.asarray(image)):
        result = pose(other, boxes=BOXES)
        np.testing.assert_allclose(result[0]["keypoints"], from_pil[0]["keypoints"], atol=1e-4)
    tensors = pose(image, boxes=BOXES, return_tensors=True)
    assert isinstance(tensors[0]["keypoints"], torch.Tensor) and tensors[0]["keypoints"].shape == (17, 2)
    torch.testing.assert_close(tensors[0]["keypoints"], torch.tensor(from_pil[0]["keypoints"]))


def test_threshold_keeps_confident_keypoints_with_their_names():
    model = BrightSpotModel(VitPoseConfig(**tiny_config_kwargs(keypoint_heads=["coco", "mpii"]))).eval()
    pose = pipeline("keypoint-detection", model=model, device="cpu")
    people = pose(disc_image(), boxes=BOXES, dataset="mpii", threshold=0.5)
    assert people[0]["labels"] == list(get_layout("mpii").keypoints)  # every score is ~1
    assert pose(disc_image(), boxes=BOXES, dataset="mpii", threshold=2.0)[0]["labels"] == []
    with pytest.raises(ValueError, match="Unknown dataset 'aic'"):
        pose(disc_image(), boxes=BOXES, dataset="aic")


# Batching -------------------------------------------------------------------------------------------------------
def test_batched_images_equal_one_by_one(pose):
    images = [random_image(10), random_image(11, size=(180, 150)), random_image(12)]
    boxes = [BOXES, [], [[5.0, 5.0, 100.0, 120.0], BOXES[1], [60.0, 20.0, 30.0, 50.0]]]
    alone = [pose(image, boxes=image_boxes, batch_size=1) for image, image_boxes in zip(images, boxes)]
    for batch_size in (2, 4, 16):
        together = pose(images, boxes=boxes, batch_size=batch_size)
        assert [len(people) for people in together] == [2, 0, 3]
        for people_a, people_b in zip(alone, together):
            for a, b in zip(people_a, people_b):
                np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-3)
                np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
                assert a["bbox"] == b["bbox"]


def test_crops_are_batched_through_the_model(tiny_model):
    pose = pipeline("keypoint-detection", model=tiny_model, device="cpu")
    sizes = []
    runner = pose.inference_model  # the (optimized) copy of tiny_model the pipeline runs
    original = runner.forward

    def counting_forward(*args, **kwargs):
        sizes.append(kwargs["pixel_values"].shape[0])
        return original(*args, **kwargs)

    runner.forward = counting_forward
    try:
        pose(random_image(13), boxes=[BOXES[0]] * 10, batch_size=4)
        assert sizes == [8, 8, 4]  # 4 + 4 + 2 crops, each with its mirrored twin
        sizes.clear()
        pose(random_image(13), boxes=[BOXES[0]] * 10, batch_size=4, flip_test=False)
        assert sizes == [4, 4, 2]
    finally:
        del runner.forward


def test_generator_input(pose):
    images = (random_image(i) for i in range(3))
    results = list(pose(images, batch_size=2))
    assert [len(people) for people in results] == [1, 1, 1]


# Detector -------------------------------------------------------------------------------------------------------
def test_detector_people_become_boxes(pose):
    image = random_image(20)
    people = pose(image, detector=tiny_detector(finds_people=True), detector_threshold=0.5)
    # Every detection token says box (cx, cy, w, h) = (0.5, 0.5, 0.4, 0.8) of the image, with certainty.
    expected = [0.3 * WIDTH, 0.1 * HEIGHT, 0.7 * WIDTH, 0.9 * HEIGHT]
    assert len(people) == 2
    for person in people:
        np.testing.assert_allclose(person["bbox"], expected, atol=1.0)
        assert person["box_score"] > 0.99
        assert len(person["keypoints"]) == 17
    assert_plain(people)


def test_detector_as_model_and_processor_pair(pose):
    detector = tiny_detector(finds_people=True)
    people = pose(random_image(21), detector=(detector.model, detector.image_processor))
    assert len(people) == 2


def test_detector_from_a_saved_folder(pose, tmp_path):
    detector = tiny_detector(finds_people=True)
    detector.save_pretrained(tmp_path / "detector")
    people = pose(random_image(26), detector=str(tmp_path / "detector"))
    assert len(people) == 2 and all(person["box_score"] > 0.99 for person in people)


def test_detector_that_finds_nobody_gives_an_empty_list(pose):
    detector = tiny_detector(finds_people=False)
    assert pose(random_image(22), detector=detector) == []
    results = pose([random_image(22), random_image(23)], detector=detector, batch_size=3)
    assert results == [[], []]


def test_detector_without_person_class_is_refused(pose):
    with pytest.raises(ValueError, match="no 'person' class"):
        pose(random_image(24), detector=tiny_detector(True, labels=("cat", "car")))


def test_given_boxes_win_over_the_detector(pose):
    people = pose(random_image(25), boxes=BOXES[:1], detector=tiny_detector(finds_people=True))
    assert len(people) == 1 and people[0]["bbox"] == [20.0, 30.0, 80.0, 150.0]


# Bad input ------------------------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors(pose, tmp_path):
    image = random_image(30)
    with pytest.raises(FileNotFoundError, match=r"Image 1: no such file .*missing\.jpg"):
        pose([image, str(tmp_path / "missing.jpg")])
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    with pytest.raises(ValueError, match=r"Image 0: cannot read .*broken\.jpg"):
        pose(str(broken))
    with pytest.raises(ValueError, match="Image 0 is empty"):
        pose(np.zeros((0, 12, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="Image 0 is empty"):
        pose(Image.new("RGB", (0, 0)))
    with pytest.raises(ValueError, match="boxes has 1 box lists for 2 images"):
        pose([image, image], boxes=[BOXES])
    with pytest.raises(ValueError, match="boxes has 3 box lists for 2 images"):
        pose([image, image], boxes=[BOXES, BOXES, BOXES])
    with pytest.raises(ValueError, match="Box 1 of image 1 is invalid"):
        pose([image, image], boxes=[BOXES, [BOXES[0], [10, 10, 0, 20]]])
    with pytest.raises(ValueError, match=r"Boxes of image 0 must have shape \(n, 4\)"):
        pose(image, boxes=[[1, 2, 3]])
    with pytest.raises(ValueError, match="box_format"):
        pose(image, boxes=BOXES, box_format="cxcywh")
    with pytest.raises(TypeError, match="Image 0: expected a path"):
        pose(12345)


# Default model, saving, sharing ---------------------------------------------------------------------------------
def test_default_model_falls_back_to_an_untrained_one_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(defaults, "EMBEDDED_MODEL_DIR", tmp_path / "missing")
    with pytest.warns(UserWarning, match="UNTRAINED"):
        pose = pipeline("keypoint-detection", device="cpu")
    assert isinstance(pose, KeypointDetectionPipeline)
    assert len(pose(random_image(40))[0]["keypoints"]) == 17


def test_default_model_is_the_embedded_folder(monkeypatch, tmp_path, tiny_model, recwarn):
    embedded = tmp_path / "embedded"
    tiny_model.save_pretrained(embedded)
    VitPoseImageProcessor.from_model_config(tiny_model.config).save_pretrained(embedded)
    monkeypatch.setattr(defaults, "EMBEDDED_MODEL_DIR", embedded)
    pose = pipeline("keypoint-detection", device="cpu")
    assert pose.model.name_or_path == str(embedded)
    assert not [w for w in recwarn if "UNTRAINED" in str(w.message)]
    torch.testing.assert_close(pose.model.vit.embeddings.position_embeddings,
                               tiny_model.vit.embeddings.position_embeddings)


def test_model_folder_and_processor_are_loaded(tmp_path, tiny_model):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    VitPoseImageProcessor(size={"height": 256, "width": 192}, padding=1.5).save_pretrained(folder)
    pose = pipeline("keypoint-detection", model=str(folder), device="cpu")
    assert isinstance(pose.image_processor, VitPoseImageProcessor) and pose.image_processor.padding == 1.5
    assert len(pose(random_image(41), boxes=BOXES)) == 2


def test_saved_custom_pipeline_reloads(tmp_path, pose):
    folder = tmp_path / "shared"
    pose.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["keypoint-detection"]["impl"] == "pipeline.KeypointDetectionPipeline"
    assert config["custom_pipelines"]["keypoint-detection"]["pt"] == ["AutoModel"]
    assert (folder / "pipeline.py").is_file() and (folder / "preprocessor_config.json").is_file()

    image = random_image(50)
    expected = pose(image, boxes=BOXES)
    # With the package installed its registered classes serve the folder, trust_remote_code or not, as transformers
    # does for registered model classes; the folder's own code is checked without the package in test_sharing.py.
    remote = pipeline("keypoint-detection", model=str(folder), trust_remote_code=True, device="cpu")
    assert type(remote) is KeypointDetectionPipeline
    local = pipeline("keypoint-detection", model=str(folder), device="cpu")
    assert type(local) is KeypointDetectionPipeline
    for reloaded in (remote, local):
        people = reloaded(image, boxes=BOXES)
        for a, b in zip(expected, people):
            np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-5)
            assert a["labels"] == b["labels"]
    assert math.isclose(people[0]["box_score"], 1.0)
