"""Hostile and careless inputs, one case per line: each ends in a valid result or a clear error naming the culprit.

Every table below is one class of input (pipeline arguments, processor settings, images, model folders, the command
line, conversion, annotation files); each row says what must come out. Tiny models and images keep them fast.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.models import randomize, tiny_config_kwargs
from support.original import (
    OriginalTopDown,
    folder_snapshot,
    original_model,
    randomise,
    save_original,
    tiny,
)
from transformers import VitPoseBackboneConfig, VitPoseForPoseEstimation, pipeline
from transformers import VitPoseConfig as BuiltinVitPoseConfig

import vitpose_hf  # noqa: F401  (registers the task)
from vitpose_hf import VitPoseConfig, VitPoseModel
from vitpose_hf.cli import _output_stems, main
from vitpose_hf.convert import VerificationError, convert_original_checkpoint
from vitpose_hf.convert import release as release_module
from vitpose_hf.data.coco import coco_to_samples
from vitpose_hf.data.converters import AnnotationError
from vitpose_hf.image_processing_vitpose import VitPoseImageProcessor
from vitpose_hf.pipeline import KeypointDetectionPipeline

SIZE = (64, 48)  # crop (height, width): 16x12 heatmaps
WIDTH, HEIGHT = 40, 30
BOX = [4.0, 3.0, 20.0, 24.0]


def pixels8(seed: int = 0, shape=(HEIGHT, WIDTH, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs(image_size=list(SIZE))))).eval()
    model.save_pretrained(folder)
    VitPoseImageProcessor.from_model_config(model.config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pose(model_dir):
    return pipeline("keypoint-detection", model=str(model_dir), pipeline_class=KeypointDetectionPipeline)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(pixels8())


def people_equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.allclose(p["keypoints"], q["keypoints"], atol=1e-4) and np.allclose(p["scores"], q["scores"], atol=1e-5)
        and np.allclose(p["bbox"], q["bbox"]) for p, q in zip(a, b)
    )


# Pipeline arguments: an error naming the argument (and the image where there is one) ------------------------------
def detector_of(result):
    return lambda image, threshold: result


PIPELINE_ERRORS = [
    pytest.param(dict(boxes=5), ValueError, "boxes must be one list of boxes per image, got 5", id="boxes=5"),
    pytest.param(dict(boxes="0,0,10,10"), ValueError, "boxes must be one list", id="boxes-string"),
    pytest.param(dict(boxes=[1, 2, 3, 4]), ValueError, "single box", id="boxes-one-flat-box"),
    pytest.param(dict(boxes=[[1, 2, 3]]), ValueError, r"image 0 must have shape", id="boxes-three-columns"),
    pytest.param(dict(boxes=[[0, 0, "w", 10]]), ValueError, "image 0 are not lists of numbers", id="boxes-text"),
    pytest.param(dict(boxes=[[0, 0, float("nan"), 10]]), ValueError, "Box 0 of image 0", id="box-nan"),
    pytest.param(dict(boxes=[[0, 0, float("inf"), 10]]), ValueError, "Box 0 of image 0", id="box-inf"),
    pytest.param(dict(boxes=[[0, 0, -5, 10]]), ValueError, "Box 0 of image 0", id="box-negative-width"),
    pytest.param(dict(boxes=[[0, 0, 0, 10]]), ValueError, "Box 0 of image 0", id="box-zero-width"),
    pytest.param(dict(boxes=[BOX, [1, 1, 1e-9, 1e-9]]), ValueError, "Box 1 of image 0", id="box-tiny-nan-warp"),
    pytest.param(dict(boxes=[[0, 0, 1e30, 1e30]]), ValueError, "Box 0 of image 0.*1e\\+09", id="box-huge"),
    pytest.param(dict(boxes=[[0, 0, 1e300, 1e300]]), ValueError, "Box 0 of image 0", id="box-overflows-float32"),
    pytest.param(dict(boxes=[[1e8, 1e8, 1, 1]]), ValueError, "Box 0 of image 0", id="box-below-float32-precision"),
    pytest.param(dict(boxes=[[10, 10, 5, 5]], box_format="xyxy"), ValueError, "Box 0 of image 0", id="xyxy-inverted"),
    pytest.param(dict(box_format="cxcywh"), ValueError, "box_format must be one of", id="box_format-unknown"),
    pytest.param(dict(threshold="high"), TypeError, "threshold must be a finite number, got 'high'", id="threshold-text"),
    pytest.param(dict(threshold=float("nan")), TypeError, "threshold must be a finite number", id="threshold-nan"),
    pytest.param(dict(threshold=[0.5]), TypeError, "threshold must be a finite number", id="threshold-list"),
    pytest.param(dict(detector_threshold="x"), TypeError, "detector_threshold must be a finite number", id="det-threshold-text"),
    pytest.param(dict(detector_threshold=1.5), ValueError, r"detector_threshold must be in \[0.0, 1.0\]", id="det-threshold-range"),
    pytest.param(dict(flip_test="False"), TypeError, "flip_test must be True or False, got 'False'", id="flip_test-string"),
    pytest.param(dict(flip_test=0), TypeError, "flip_test must be True or False", id="flip_test-int"),
    pytest.param(dict(return_tensors="pt"), TypeError, "return_tensors must be True or False", id="return_tensors-string"),
    pytest.param(dict(dataset=0.7), TypeError, "dataset must be a head's name or integer index, got 0.7", id="dataset=0.7"),
    pytest.param(dict(dataset=True), TypeError, "dataset must be", id="dataset-bool"),
    pytest.param(dict(dataset=3), ValueError, "dataset_index 3 is out of range", id="dataset-out-of-range"),
    pytest.param(dict(dataset="mpii"), ValueError, "Unknown dataset 'mpii'", id="dataset-unknown-name"),
    pytest.param(dict(timeout="soon"), TypeError, "timeout must be a finite number", id="timeout-text"),
    pytest.param(dict(padding=-1.0), TypeError, "padding", id="padding-not-a-pipeline-argument"),
    pytest.param(dict(detector=42), TypeError, "detector must be a model id", id="detector-int"),
    pytest.param(dict(detector="/nonexistent/detector"), FileNotFoundError, "'/nonexistent/detector' does not exist", id="detector-missing-folder"),
    pytest.param(dict(detector=detector_of(None)), ValueError, "returned NoneType for image 0", id="detector-returns-none"),
    pytest.param(dict(detector=detector_of([{"label": "person"}])), ValueError, "Detection 0 of image 0 must be a dict", id="detector-no-score"),
    pytest.param(dict(detector=detector_of(["person"])), ValueError, "Detection 0 of image 0 must be a dict", id="detector-strings"),
    pytest.param(dict(detector=detector_of([{"label": "person", "score": 0.9, "box": [1, 2, 3, 4]}])), ValueError, "Detection 0 of image 0: 'box'", id="detector-box-list"),
    pytest.param(dict(detector=detector_of([{"label": "person", "score": "hi", "box": dict(xmin=0, ymin=0, xmax=5, ymax=5)}])), ValueError, "finite numbers", id="detector-score-text"),
    pytest.param(dict(detector=detector_of([{"label": "person", "score": 0.9, "box": dict(xmin=0, ymin=float("nan"), xmax=5, ymax=5)}])), ValueError, "finite numbers", id="detector-box-nan"),
]


@pytest.mark.parametrize("kwargs, error, message", PIPELINE_ERRORS)
def test_pipeline_argument_errors(pose, image, kwargs, error, message):
    with pytest.raises(error, match=message):
        pose(image, **kwargs)


IMAGE_ERRORS = [
    pytest.param("/nonexistent/street.jpg", FileNotFoundError, "Image 0: no such file", id="missing-file"),
    pytest.param("http://127.0.0.1:9/street.jpg", ValueError, r"Image 0: cannot fetch 'http://127.0.0.1:9/street.jpg'", id="offline-url"),
    pytest.param(np.zeros((0, 5, 3), np.uint8), ValueError, "Image 0 is empty", id="empty-array"),
    pytest.param(np.zeros((4, 5, 7), np.uint8), ValueError, "Image 0: expected an", id="seven-channels"),
    pytest.param(12, TypeError, "Image 0: expected a path", id="number-as-image"),
]


@pytest.mark.parametrize("bad, error, message", IMAGE_ERRORS)
def test_bad_images_are_named(pose, image, bad, error, message):
    with pytest.raises(error, match=message):
        pose(bad, boxes=[BOX])


def test_bad_image_in_a_batch_is_named_by_index(pose, image):
    with pytest.raises(FileNotFoundError, match="Image 1: no such file"):
        pose([image, "/nonexistent/b.jpg"], boxes=[[BOX], [BOX]])


def test_truncated_image_file_is_named(pose, tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(pixels8()).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match="Image 0: cannot read .*cut.png"):
        pose(str(path), boxes=[BOX])


# Empty batches: nobody found is a valid, empty result ----------------------------------------------------------------
def nobody(image, threshold):
    return [{"label": "car", "score": 0.99, "box": dict(xmin=0, ymin=0, xmax=9, ymax=9)}]


EMPTY = [
    pytest.param(dict(boxes=[[], []]), [0, 0], id="no-boxes-anywhere"),
    pytest.param(dict(boxes=[[], [BOX]]), [0, 1], id="no-boxes-in-first-image"),
    pytest.param(dict(boxes=[np.zeros((0, 4)), np.zeros((0, 5))]), [0, 0], id="empty-arrays"),
    pytest.param(dict(detector=detector_of([])), [0, 0], id="detector-finds-nothing"),
    pytest.param(dict(detector=nobody), [0, 0], id="detector-finds-no-person"),
]


@pytest.mark.parametrize("kwargs, counts", EMPTY)
def test_empty_batches_give_empty_lists(pose, image, kwargs, counts):
    results = pose([image, image], **kwargs)
    assert [len(people) for people in results] == counts


@pytest.mark.parametrize("flip_test", [pytest.param(True, id="flip"), pytest.param(False, id="no-flip")])
def test_model_forward_on_zero_crops(model_dir, flip_test):
    model = VitPoseModel.from_pretrained(model_dir).eval()
    crops = torch.zeros(0, 3, *SIZE)
    with torch.no_grad():
        out = model(torch.cat([crops, crops]) if flip_test else crops, labels=torch.zeros(0, 17, 16, 12))
    assert out.heatmaps.shape == (0, 17, SIZE[0] // 4, SIZE[1] // 4) and float(out.loss) == 0.0


def test_post_processing_zero_crops(model_dir):
    processor = VitPoseImageProcessor.from_pretrained(model_dir)
    inputs = processor([Image.fromarray(pixels8()), Image.fromarray(pixels8(1))], boxes=[[], []])
    assert inputs["pixel_values"].shape == (0, 3, *SIZE)
    assert processor.post_process_pose_estimation(torch.zeros(0, 17, 16, 12), boxes=[[], []], threshold=0.3) == [[], []]


# Images: 16-bit, EXIF, odd modes give what their 8-bit, upright equivalent gives ------------------------------------
GRADIENT16 = (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) * 54).astype(np.uint16)  # 0 .. 64746
GRADIENT8 = np.round(GRADIENT16 / 257.0).astype(np.uint8)


def exif_file(tmp_path: Path, orientation: int) -> str:
    picture = Image.fromarray(pixels8(3))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"exif{orientation}.png"
    picture.save(path, exif=exif)
    return str(path)


def i16_file(tmp_path: Path) -> str:
    path = tmp_path / "depth16.png"
    Image.fromarray(GRADIENT16).save(path)  # mode I;16
    return str(path)


IMAGES = [
    pytest.param(lambda tmp: i16_file(tmp), lambda: np.repeat(GRADIENT8[..., None], 3, -1), id="png-16bit-file"),
    pytest.param(lambda tmp: GRADIENT16, lambda: np.repeat(GRADIENT8[..., None], 3, -1), id="uint16-array"),
    pytest.param(lambda tmp: np.repeat(GRADIENT16[..., None], 3, -1), lambda: np.repeat(GRADIENT8[..., None], 3, -1), id="uint16-rgb-array"),
    pytest.param(lambda tmp: Image.fromarray(GRADIENT16), lambda: np.repeat(GRADIENT8[..., None], 3, -1), id="pil-I;16"),
    pytest.param(lambda tmp: exif_file(tmp, 3), lambda: np.rot90(pixels8(3), 2), id="exif-rotated-180"),
    pytest.param(lambda tmp: exif_file(tmp, 6), lambda: np.rot90(pixels8(3), -1), id="exif-rotated-90-cw"),
    pytest.param(lambda tmp: exif_file(tmp, 8), lambda: np.rot90(pixels8(3), 1), id="exif-rotated-90-ccw"),
    pytest.param(lambda tmp: exif_file(tmp, 2), lambda: pixels8(3)[:, ::-1], id="exif-mirrored"),
    pytest.param(lambda tmp: np.dstack([pixels8(4), np.zeros((HEIGHT, WIDTH, 1), np.uint8)]), lambda: pixels8(4), id="rgba-alpha-dropped"),
    pytest.param(lambda tmp: pixels8(5) / 255.0, lambda: pixels8(5), id="float-0-1-array"),
    pytest.param(lambda tmp: torch.from_numpy(pixels8(6)).permute(2, 0, 1), lambda: pixels8(6), id="chw-tensor"),
]


@pytest.mark.parametrize("make, reference", IMAGES)
def test_images_give_what_their_8bit_upright_version_gives(pose, tmp_path, make, reference):
    """The whole-image box and the keypoints must be those of the upright 8-bit picture, built here independently."""
    expected = np.ascontiguousarray(reference())
    got = pose(make(tmp_path), flip_test=False)
    want = pose(Image.fromarray(expected).convert("RGB"), flip_test=False)
    assert got[0]["bbox"] == [0.0, 0.0, float(expected.shape[1]), float(expected.shape[0])]
    assert people_equal(got, want)


@pytest.mark.parametrize("make", [
    pytest.param(lambda: GRADIENT16, id="uint16-array"),
    pytest.param(lambda: Image.fromarray(GRADIENT16), id="pil-I;16"),
    pytest.param(lambda: torch.from_numpy(GRADIENT16.astype(np.int32)).to(torch.uint16), id="uint16-tensor"),
])
def test_processor_reads_16bit_as_16bit(model_dir, make):
    """Crops of a 16-bit picture equal those of its 8-bit version (to 8-bit rounding), not a white image."""
    processor = VitPoseImageProcessor.from_pretrained(model_dir)
    crops = processor(make(), boxes=[BOX])["pixel_values"]
    reference = processor(GRADIENT8, boxes=[BOX])["pixel_values"]
    torch.testing.assert_close(crops, reference, atol=0.5 / 255 / 0.224 + 1e-4, rtol=0)


# Processor settings: a wrong kind or range is an error naming the setting ------------------------------------------
PROCESSOR_ERRORS = [
    pytest.param(dict(padding=-1), "padding must be a finite number > 0, got -1", id="padding-negative"),
    pytest.param(dict(padding=0), "padding must be a finite number > 0, got 0", id="padding-zero"),
    pytest.param(dict(padding=float("nan")), "padding must be a finite number > 0", id="padding-nan"),
    pytest.param(dict(padding="1.25"), "padding must be a finite number > 0, got '1.25'", id="padding-string"),
    pytest.param(dict(rescale_factor="1/255"), "rescale_factor must be", id="rescale_factor-string"),
    pytest.param(dict(rescale_factor=0), "rescale_factor must be", id="rescale_factor-zero"),
    pytest.param(dict(do_rescale="no"), "do_rescale must be True or False, got 'no'", id="do_rescale-string"),
    pytest.param(dict(do_normalize=1), "do_normalize must be True or False", id="do_normalize-int"),
    pytest.param(dict(do_affine_transform="False"), "do_affine_transform must be True or False", id="do_affine-string"),
    pytest.param(dict(blur_kernel_size=4), "blur_kernel_size must be an odd integer", id="blur-even"),
    pytest.param(dict(blur_kernel_size=11.0), "blur_kernel_size must be an odd integer", id="blur-float"),
    pytest.param(dict(size={"height": "64", "width": 48}), "size must hold integer", id="size-string"),
    pytest.param(dict(size={"height": 64}), "size must be a dict with keys", id="size-missing-width"),
    pytest.param(dict(image_std=[0.2, 0.0, 0.2]), "image_std need 3 values", id="std-zero"),
]


@pytest.mark.parametrize("settings, message", PROCESSOR_ERRORS)
def test_processor_settings_at_construction(settings, message):
    with pytest.raises(ValueError, match=message):
        VitPoseImageProcessor(**settings)


@pytest.mark.parametrize("settings, message", [
    p for p in PROCESSOR_ERRORS if "size" not in p.id and "std" not in p.id and "blur" not in p.id  # blur: codec's
])
def test_processor_settings_per_call(model_dir, settings, message):
    # The DARK blur kernel belongs to the head's codec, not to a call: only the constructor takes it.
    processor = VitPoseImageProcessor.from_pretrained(model_dir)
    with pytest.raises(ValueError, match=message):
        processor(pixels8(), boxes=[BOX], **settings)


# Model folders: a missing, truncated, mistyped or foreign folder --------------------------------------------------
def copy_of(model_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(model_dir, folder)
    return folder


def edit_json(folder: Path, name: str, **changes) -> None:
    data = json.loads((folder / name).read_text())
    data.update(changes)
    (folder / name).write_text(json.dumps(data))


CONFIG_ERRORS = [
    pytest.param(dict(hidden_size="32"), "VitPoseConfig.hidden_size must be an integer, got '32'", id="hidden_size-string"),
    pytest.param(dict(num_hidden_layers=2.5), "num_hidden_layers must be an integer, got 2.5", id="layers-float"),
    pytest.param(dict(num_attention_heads=None), "num_attention_heads must be an integer, got None", id="heads-null"),
    pytest.param(dict(layer_norm_eps="1e-6"), "layer_norm_eps must be a number", id="eps-string"),
    pytest.param(dict(qkv_bias="true"), "qkv_bias must be true or false", id="qkv_bias-string"),
    pytest.param(dict(decoder=1), "decoder must be a string", id="decoder-int"),
    pytest.param(dict(image_size=[64.5, 48]), "image_size must be", id="image_size-float"),
    pytest.param(dict(num_experts=True), "num_experts must be an integer", id="experts-bool"),
]


@pytest.mark.parametrize("changes, message", CONFIG_ERRORS)
def test_config_values_of_the_wrong_type(model_dir, tmp_path, changes, message):
    folder = copy_of(model_dir, tmp_path)
    edit_json(folder, "config.json", **changes)
    with pytest.raises(TypeError, match=message):
        VitPoseModel.from_pretrained(folder)


PREPROCESSOR_ERRORS = [
    pytest.param(dict(padding="abc"), "preprocessor_config.json: padding must be", id="padding-string"),
    pytest.param(dict(padding=-1), "preprocessor_config.json: padding must be", id="padding-negative"),
    pytest.param(dict(do_rescale="yes"), "preprocessor_config.json: do_rescale must be", id="do_rescale-string"),
    pytest.param(dict(size={"height": "x", "width": 48}), "preprocessor_config.json: size must hold integer", id="size-string"),
    pytest.param(dict(blur_kernel_size=0), "preprocessor_config.json: blur_kernel_size", id="blur-zero"),
]


@pytest.mark.parametrize("changes, message", PREPROCESSOR_ERRORS)
def test_invalid_preprocessor_config_is_an_error_not_defaults(model_dir, tmp_path, changes, message):
    folder = copy_of(model_dir, tmp_path)
    edit_json(folder, "preprocessor_config.json", **changes)
    with pytest.raises(ValueError, match=message):
        pipeline("keypoint-detection", model=str(folder), pipeline_class=KeypointDetectionPipeline)


def test_unreadable_preprocessor_config_names_the_file(model_dir, tmp_path):
    folder = copy_of(model_dir, tmp_path)
    (folder / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(OSError, match="preprocessor_config.json"):
        pipeline("keypoint-detection", model=str(folder), pipeline_class=KeypointDetectionPipeline)


def test_missing_model_folder_is_not_a_hub_error():
    with pytest.raises(FileNotFoundError, match="Model folder '/nonexistent/vitpose' does not exist"):
        VitPoseModel.from_pretrained("/nonexistent/vitpose")


def test_model_path_to_a_file_is_named(model_dir):
    with pytest.raises(NotADirectoryError, match="is a file"):
        VitPoseModel.from_pretrained(model_dir / "config.json")


@pytest.mark.parametrize("cut", [pytest.param(0.5, id="half"), pytest.param(0.001, id="header-only")])
def test_truncated_safetensors_are_named(model_dir, tmp_path, cut):
    folder = copy_of(model_dir, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: max(9, int(weights.stat().st_size * cut))])
    with pytest.raises(OSError, match=f"{weights}.*truncated or corrupt"):
        VitPoseModel.from_pretrained(folder)


def test_builtin_vitpose_folder_runs_in_the_pipeline(tmp_path, image):
    """transformers' own ViTPose folder: the pipeline converts it and gives the built-in model's own keypoints."""
    backbone = VitPoseBackboneConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=list(SIZE),
                                     out_indices=[2])
    torch.manual_seed(0)
    builtin = randomize(VitPoseForPoseEstimation(BuiltinVitPoseConfig(backbone_config=backbone))).eval()
    builtin.save_pretrained(tmp_path)
    people = pipeline("keypoint-detection", model=str(tmp_path))(image, boxes=[BOX], flip_test=False)
    processor = VitPoseImageProcessor(size={"height": SIZE[0], "width": SIZE[1]})
    with torch.no_grad():
        heatmaps = builtin(processor(image, boxes=[BOX])["pixel_values"]).heatmaps
    expected = processor.post_process_pose_estimation(heatmaps, boxes=[[BOX]])[0][0]
    assert np.allclose(people[0]["keypoints"], expected["keypoints"].numpy(), atol=1e-3)


# Command line: unique outputs, written whole; every expected failure one line and exit code 2 -----------------------
def test_output_names_never_collide():
    names = _output_stems(["d1/x.jpg", "d2/x.jpg", "x_1.jpg", "X.png", "d3/x_1.jpg", "http://h/a b.jpg?s=1"])
    assert names == ["x", "x_1", "x_1_1", "X_2", "x_1_2", "a_b"]
    assert _output_stems(["coco_results.jpg"], reserved=["coco_results"]) == ["coco_results_1"]


def test_cli_outputs_of_same_named_images_are_all_kept(model_dir, tmp_path):
    inputs = []
    for seed, relative in enumerate(["d1/x.jpg", "d2/x.jpg", "x_1.jpg"]):
        path = tmp_path / "in" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels8(seed)).save(path)
        inputs.append(str(path))
    out = tmp_path / "out"
    assert main(["predict", *inputs, "--model", str(model_dir), "--output-dir", str(out), "--no-flip"]) == 0
    records = {json.loads(p.read_text())["image"] for p in out.glob("*.json")}
    assert records == set(inputs) and len(list(out.glob("*.png"))) == 3
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def fail_writes(monkeypatch):
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", no_space)


CLI_ERRORS = [
    pytest.param(lambda tmp, m: ["predict", str(tmp / "missing.jpg"), "--model", m], "Image 0: no such file", id="missing-image"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", "/nonexistent/model"], "--model '/nonexistent/model': no such folder", id="missing-model-folder"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", str(tmp)], "", id="model-folder-without-config"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", m, "--detector", "/nonexistent/det"], "--detector '/nonexistent/det': no such folder", id="missing-detector"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", m, "--device", "banana"], "banana", id="bad-device"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", m, "--boxes", str(tmp / "none.json")], "Cannot read boxes file", id="missing-boxes-file"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", m, "--dataset", "mpii"], "Unknown dataset 'mpii'", id="unknown-dataset"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", m, "--detector-threshold", "7"], "detector_threshold must be in", id="threshold-range"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", m, "--batch-size", "0"], "batch_size", id="batch-size-zero"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", m, "--output-dir", "FILE"], "", id="output-dir-is-a-file"),
    pytest.param(lambda tmp, m: ["predict", "IMAGE", "--model", m, "DISKFULL"], "No space left on device", id="disk-full"),
]


@pytest.mark.parametrize("make_args, message", CLI_ERRORS)
def test_cli_failures_are_one_line_and_exit_2(model_dir, tmp_path, capsys, monkeypatch, make_args, message):
    picture = tmp_path / "street.png"
    Image.fromarray(pixels8()).save(picture)
    (tmp_path / "file.txt").write_text("not a folder")
    args = [a.replace("IMAGE", str(picture)).replace("FILE", str(tmp_path / "file.txt"))
            for a in make_args(tmp_path, str(model_dir))]
    if "DISKFULL" in args:
        args.remove("DISKFULL")
        args += ["--output-dir", str(tmp_path / "out")]
        fail_writes(monkeypatch)
    monkeypatch.delenv("VITPOSE_HF_DEBUG", raising=False)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if ": error: " in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in "\n".join(err)


def test_cli_debug_shows_the_traceback(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        main(["--debug", "predict", str(tmp_path / "missing.jpg"), "--model", str(model_dir)])


# Conversion: never a moment without output, dry runs create nothing, verification against the checkpoint ---------
@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    return save_original(tmp_path / "c.pth", original_model("vitpose-base").state_dict())


def test_overwrite_failure_restores_the_old_output(tmp_path, checkpoint, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real_rename = os.rename

    def rename(source, target):
        if Path(target) == out and ".tmp-" in Path(source).name:
            raise OSError(errno.EIO, "rename failed", str(target))
        return real_rename(source, target)

    monkeypatch.setattr(release_module.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        convert_original_checkpoint(checkpoint, "vitpose-base", out, overwrite=True, config_overrides=tiny("vitpose-base"))
    assert folder_snapshot(out) == {"old.txt": b"old"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_overwrite_replaces_with_no_gap(tmp_path, checkpoint, monkeypatch):
    """At every rename either the old or the new folder sits at the output path."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real_rename, seen = os.rename, []

    def rename(source, target):
        seen.append(out.is_dir())  # before each move, the output path is still occupied ...
        real_rename(source, target)

    monkeypatch.setattr(release_module.os, "rename", rename)
    convert_original_checkpoint(checkpoint, "vitpose-base", out, overwrite=True, config_overrides=tiny("vitpose-base"))
    assert seen == [True, False] and (out / "model.safetensors").is_file() and not (out / "old.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # ... and the old one is gone after


def test_dry_run_creates_no_folders(tmp_path, checkpoint):
    out = tmp_path / "not" / "yet" / "there"
    result = convert_original_checkpoint(checkpoint, "vitpose-base", out, dry_run=True, config_overrides=tiny("vitpose-base"))
    assert result.output_dir is None and not (tmp_path / "not").exists()


def test_disk_full_is_named_and_leaves_nothing(tmp_path, checkpoint, monkeypatch):
    def no_space(self, folder, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "model.safetensors"))

    monkeypatch.setattr(VitPoseModel, "save_pretrained", no_space)
    with pytest.raises(OSError, match="No space left on the disk of .*model.safetensors.*unchanged"):
        convert_original_checkpoint(checkpoint, "vitpose-base", tmp_path / "out", config_overrides=tiny("vitpose-base"))
    assert not (tmp_path / "out").exists() and [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of the released ViT-S size (384 wide, 12 blocks: 12 attention heads) on a 4x3 token grid."""
    path = tmp_path_factory.mktemp("small") / "small.pth"
    return save_original(path, randomise(OriginalTopDown(["coco"], dim=384, depth=12, num_heads=12)).state_dict())


@pytest.mark.parametrize("heads, passes", [pytest.param(12, True, id="right-heads"), pytest.param(6, False, id="wrong-heads")])
def test_verify_uses_the_checkpoints_own_attention_heads(tmp_path, small_checkpoint, heads, passes):
    overrides = dict(image_size=[64, 48], decoder_channels=16, num_attention_heads=heads)
    convert = lambda: convert_original_checkpoint(small_checkpoint, "vitpose-small", tmp_path / "out", verify=True,
                                                  config_overrides=overrides)
    if passes:
        assert max(convert().verification["original_reference"].values()) <= 1e-4
    else:
        with pytest.raises(VerificationError, match="num_attention_heads 6.*has 12"):
            convert()
        assert not (tmp_path / "out").exists()


def test_verify_refuses_a_model_with_other_heads_than_the_checkpoint():
    from vitpose_hf.convert.original import convert_original_state_dict
    from vitpose_hf.convert.reference import check_against_original

    original = original_model("vitpose-base-coco-aic-mpii").state_dict()
    config = VitPoseConfig.from_variant("vitpose-base", **tiny("vitpose-base"))
    converted, _ = convert_original_state_dict(original, config, strict=False)
    model = VitPoseModel(config).eval()
    model.load_state_dict(converted)
    with pytest.raises(VerificationError, match=r"1 head\(s\) with \[17\] keypoints; the checkpoint has 3"):
        check_against_original(model, original)


# Annotation files: reported by annotation id, as an error or a counted skip -----------------------------------------
def coco_data(**edit) -> dict:
    keypoints = [10.0, 10.0, 2.0] * 17
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
                   {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [5, 5, 40, 60], "keypoints": keypoints,
                         "num_keypoints": 17, "area": 2400, "iscrowd": 0},
                        {"id": 11, "image_id": 2, "category_id": 1, "bbox": [5, 5, 40, 60], "keypoints": keypoints,
                         "num_keypoints": 17, "area": 2400, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)]}],
    }
    kind, value = next(iter(edit.items())) if edit else (None, None)
    if kind == "image":
        data["images"][1].update(value)
    elif kind == "annotation":
        data["annotations"][1].update(value)
    elif kind == "extra_image":
        data["images"].append(value)
    elif kind == "extra_annotation":
        data["annotations"].append(dict(data["annotations"][0], **value))
    return data


DATA = [
    pytest.param(dict(extra_annotation={"id": 11, "image_id": 1}), "duplicate_annotation_id", "annotation id 11", id="duplicated-annotation-id"),
    pytest.param(dict(extra_image={"id": 2, "file_name": "c.jpg"}), "duplicate_image_id", "Image id 2 of annotation id 11", id="duplicated-image-id"),
    pytest.param(dict(annotation={"image_id": 99}), "unknown_image", "Annotation id 11 .* image id 99", id="annotation-of-missing-image"),
    pytest.param(dict(annotation={"bbox": [5, float("nan"), 40, 60]}), "nan_values", "Box of annotation id 11", id="bbox-nan"),
    pytest.param(dict(annotation={"bbox": [5, 5, float("inf"), 60]}), "nan_values", "Box of annotation id 11", id="bbox-inf"),
    pytest.param(dict(annotation={"bbox": [5, 5, "40", 60]}), "nan_values", "Box of annotation id 11", id="bbox-string"),
    pytest.param(dict(annotation={"keypoints": [float("nan")] * 51}), "nan_values", "Keypoints of annotation id 11", id="keypoints-nan"),
    pytest.param(dict(image={"file_name": "../secret.jpg"}), "unsafe_path", "'../secret.jpg' of annotation id 11", id="path-dotdot"),
    pytest.param(dict(image={"file_name": "x/../../secret.jpg"}), "unsafe_path", "annotation id 11", id="path-nested-dotdot"),
    pytest.param(dict(image={"file_name": "/etc/passwd"}), "unsafe_path", "'/etc/passwd' of annotation id 11", id="path-absolute"),
    pytest.param(dict(image={"file_name": "..\\secret.jpg"}), "unsafe_path", "annotation id 11", id="path-windows-dotdot"),
    pytest.param(dict(image={"file_name": "C:\\data\\x.jpg"}), "unsafe_path", "annotation id 11", id="path-windows-drive"),
]


@pytest.mark.parametrize("edit, reason, message", DATA)
def test_bad_annotations_raise_naming_the_annotation(tmp_path, edit, reason, message):
    with pytest.raises(AnnotationError, match=message):
        coco_to_samples(coco_data(**edit), tmp_path, check_images=False, source="ann.json")


@pytest.mark.parametrize("edit, reason, message", DATA)
def test_bad_annotations_are_counted_skips(tmp_path, edit, reason, message):
    samples, report = coco_to_samples(coco_data(**edit), tmp_path, check_images=False, on_error="skip",
                                      source="ann.json")
    assert report.skipped[reason] == 1 and report.num_errors == 1
    ids = [s["annotation_id"] for s in samples]  # the clean annotation is kept (and the first of a duplicated id)
    assert ids == ([10, 11] if reason == "duplicate_annotation_id" else [10])


def test_clean_annotations_load_whole(tmp_path):
    samples, report = coco_to_samples(coco_data(), tmp_path, check_images=False, source="ann.json")
    assert [s["annotation_id"] for s in samples] == [10, 11] and report.num_errors == 0
