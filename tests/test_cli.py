"""The `vitpose-hf` command: predict and demo, with tiny local models (no network)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.detectors import tiny_detector
from support.models import tiny_config_kwargs

import vitpose_hf
from vitpose_hf import VitPoseConfig, VitPoseModel, cli, defaults
from vitpose_hf.cli import (
    DEMO_BOXES,
    DEMO_IMAGE,
    coco_results,
    load_boxes_file,
    main,
    predict,
)
from vitpose_hf.image_processing_vitpose import VitPoseImageProcessor


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs()))
    model.save_pretrained(folder)
    VitPoseImageProcessor.from_model_config(model.config).save_pretrained(folder)
    return str(folder)


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name, size in (("000000000139.jpg", (160, 120)), ("street.png", (200, 150))):
        path = tmp_path / name
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_predict_writes_annotated_png_and_json(model_dir, images, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"000000000139.jpg": [[10, 10, 50, 80], [70, 20, 40, 90]], images[1]: []}))
    out = tmp_path / "out"
    assert main(["predict", *images, "--model", model_dir, "--boxes", str(boxes), "--output-dir", str(out),
                 "--coco-results"]) == 0
    printed = capsys.readouterr().out
    assert "2 people" in printed and "0 people" in printed

    first = json.loads((out / "000000000139.json").read_text())
    assert (first["width"], first["height"]) == (160, 120)
    assert len(first["people"]) == 2
    assert first["people"][0]["bbox"] == [10, 10, 60, 90]
    assert len(first["people"][0]["keypoints"]) == 17 and first["people"][0]["labels"][0] == "nose"
    assert json.loads((out / "street.json").read_text())["people"] == []
    for name, size in (("000000000139.png", (160, 120)), ("street.png", (200, 150))):
        assert Image.open(out / name).size == size

    results = json.loads((out / "coco_results.json").read_text())
    assert len(results) == 2
    assert {r["image_id"] for r in results} == {139}
    person = first["people"][0]
    assert results[0]["keypoints"][:3] == pytest.approx(person["keypoints"][0] + [person["scores"][0]], abs=0.01)
    confident = [s for s in person["scores"] if s > 0.2]  # the original's rescoring (box score 1 here)
    assert results[0]["score"] == pytest.approx(np.mean(confident) if confident else 0.0, abs=1e-3)
    assert results[0]["category_id"] == 1 and len(results[0]["keypoints"]) == 51


def test_predict_without_boxes_uses_the_whole_image_and_no_flip(model_dir, images, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", images[1], "--model", model_dir, "--output-dir", str(out), "--no-flip"]) == 0
    people = json.loads((out / "street.json").read_text())["people"]
    assert len(people) == 1 and people[0]["bbox"] == [0, 0, 200, 150]


def test_boxes_file_layouts(images, tmp_path):
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps([[[1, 2, 3, 4]], []]))
    assert load_boxes_file(as_list, images) == [[[1, 2, 3, 4]], []]

    detections = tmp_path / "detections.json"
    detections.write_text(json.dumps([
        {"image_id": 139, "bbox": [1, 2, 30, 40], "score": 0.9, "category_id": 1},
        {"image_id": 139, "bbox": [5, 5, 10, 10], "score": 0.8, "category_id": 3},  # not a person
        {"image_id": 7, "bbox": [5, 5, 10, 10], "score": 0.8, "category_id": 1},  # another image
    ]))
    assert load_boxes_file(detections, images) == [[[1, 2, 30, 40, 0.9]], []]

    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"other.jpg": []}))
    with pytest.raises(ValueError, match="names images that were not given"):
        load_boxes_file(mapping, images)
    as_list.write_text(json.dumps([[]]))
    with pytest.raises(ValueError, match="1 box lists for 2 images"):
        load_boxes_file(as_list, images)


def test_coco_results_score_as_evaluation_does():
    # The original's rescoring: box score x mean of the keypoint scores above 0.2 (0.1 does not count).
    people = [{"keypoints": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "scores": [0.5, 1.0, 0.1], "box_score": 0.5,
               "bbox": [10.0, 20.0, 40.0, 80.0]}]
    assert coco_results(people, 3) == [
        {"image_id": 3, "category_id": 1, "keypoints": [1.0, 2.0, 0.5, 3.0, 4.0, 1.0, 5.0, 6.0, 0.1],
         "score": 0.5 * (0.5 + 1.0) / 2, "bbox": [10.0, 20.0, 30.0, 60.0]}
    ]


def test_bad_input_exits_with_a_message(model_dir, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.jpg"), "--model", model_dir, "--output-dir", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_demo_assets_are_bundled():
    boxes = json.loads(DEMO_BOXES.read_text())
    image = Image.open(DEMO_IMAGE)
    assert len(boxes["boxes"]) >= 3
    for x, y, w, h in boxes["boxes"]:
        assert 0 <= x and 0 <= y and x + w <= image.width and y + h <= image.height


def test_demo_runs_offline_as_a_command(tmp_path):
    """`vitpose-hf demo` in a fresh process (what `make demo` runs), with the default model."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-m", "vitpose_hf.cli", "demo", "--output-dir", str(tmp_path / "demo_output")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "demo_output" in done.stdout
    # The embedded model knows these synthetic figures and the boxes are bundled: nothing to warn about.
    assert "synthetic figures" not in done.stderr and "no boxes and no detector" not in done.stderr
    if not (defaults.EMBEDDED_MODEL_DIR / "config.json").is_file():
        assert "UNTRAINED" in done.stderr
    result = json.loads((tmp_path / "demo_output" / "demo.json").read_text())
    assert len(result["people"]) == len(json.loads(DEMO_BOXES.read_text())["boxes"])
    assert Image.open(tmp_path / "demo_output" / "demo.png").size == Image.open(DEMO_IMAGE).size


def test_demo_with_another_model(tmp_path, model_dir):
    assert main(["demo", "--model", model_dir, "--output-dir", str(tmp_path / "d")]) == 0
    assert Path(tmp_path / "d" / "demo.png").is_file()


def test_predict_with_a_detector_folder(model_dir, images, tmp_path):
    tiny_detector(finds_people=True).save_pretrained(tmp_path / "detector")
    out = tmp_path / "out"
    assert main(["predict", images[0], "--model", model_dir, "--detector", str(tmp_path / "detector"),
                 "--output-dir", str(out)]) == 0
    people = json.loads((out / "000000000139.json").read_text())["people"]
    assert len(people) == 2 and people[0]["box_score"] > 0.99


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"vitpose-hf {vitpose_hf.__version__}"


class FailsOnThirdImage:
    """A pipeline stand-in: the real pipeline for the first two images, then an error."""

    def __init__(self, pose):
        self.pose, self.model, self.calls = pose, pose.model, 0

    def __call__(self, image, **kwargs):
        self.calls += 1
        if self.calls == 3:
            raise ValueError("the third image is broken")
        return self.pose(image, **kwargs)


def test_each_image_is_written_as_soon_as_it_is_done(model_dir, tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(1)
    paths = []
    for name in ("first.png", "second.png", "third.png"):
        Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    boxes = [[[5, 5, 40, 70]]] * 3
    pose = pipeline_for(model_dir)

    with pytest.raises(ValueError, match="third image"):
        predict(paths, tmp_path / "library", boxes=boxes, flip_test=False, pose=FailsOnThirdImage(pose))
    written = sorted(path.name for path in (tmp_path / "library").iterdir())
    assert written == ["first.json", "first.png", "second.json", "second.png"]

    # The command reports each image when it is written, so the first two are on stdout before the error.
    monkeypatch.setattr(cli, "build_pipeline", lambda *args, **kwargs: FailsOnThirdImage(pose))
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps(boxes))
    assert main(["predict", *paths, "--boxes", str(boxes_file), "--output-dir", str(tmp_path / "cli")]) == 2
    captured = capsys.readouterr()
    assert "first.png: 1 people" in captured.out and "second.png: 1 people" in captured.out
    assert "third.png" not in captured.out and "the third image is broken" in captured.err
    assert (tmp_path / "cli" / "second.json").is_file() and not (tmp_path / "cli" / "third.json").exists()


def pipeline_for(model_dir: str):
    from transformers import pipeline

    return pipeline("keypoint-detection", model=model_dir, device="cpu")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty,quiet", [(True, False), (True, True), (False, False)])
def test_progress_bar_on_a_terminal_unless_quiet(model_dir, images, tmp_path, monkeypatch, tty, quiet):
    stderr = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([[[10, 10, 50, 80]], [[20, 20, 40, 60]]]))
    args = ["predict", *images, "--model", model_dir, "--boxes", str(boxes), "--no-flip", "--output-dir",
            str(tmp_path / "out")]
    assert main(args + (["--quiet"] if quiet else [])) == 0
    shown = stderr.getvalue()
    if tty and not quiet:
        assert "2/2" in shown and "image" in shown
    else:
        assert shown == ""


@pytest.mark.parametrize("option,value", [
    ("--model", "{tmp}/no-such-model"),
    ("--model", "no-org/no-such-model"),  # a Hub id, offline and not cached
    ("--detector", "{tmp}/no-such-detector"),
    ("--detector", "no-org/no-such-detector"),
    ("--device", "toaster"),
    ("--device", "cuda:99"),
])
def test_bad_model_detector_or_device_is_one_line_without_traceback(model_dir, images, tmp_path, capsys, option,
                                                                    value):
    value = value.format(tmp=tmp_path)
    args = {"--model": model_dir, "--output-dir": str(tmp_path / "out"), option: value}
    assert main(["predict", images[0], *[part for pair in args.items() for part in pair]]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vitpose-hf predict: error:") and option in lines[0] and value in lines[0]
    assert not (tmp_path / "out" / "000000000139.json").exists()
