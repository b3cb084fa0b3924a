"""Scale out: predict and evaluate split over `accelerate launch` processes (two gloo CPU processes), --resume, and
keypoint datasets read from parquet shards, streamed, through the training augmentation and the evaluation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from support.models import randomize, tiny_config_kwargs
from support.parquet import export_parquet
from torch.utils.data import DataLoader

from vitpose_hf import VitPoseConfig, VitPoseModel
from vitpose_hf.cli import main
from vitpose_hf.data import (
    TopDownAugmentation,
    collate_keypoints,
    load_keypoint_samples,
)
from vitpose_hf.data.hf_datasets import (
    AugmentedStream,
    load_keypoint_hf_dataset,
    load_keypoint_rows,
)
from vitpose_hf.data.synthetic import generate_synthetic_dataset
from vitpose_hf.evaluation import evaluate_keypoint_dataset
from vitpose_hf.evaluation.distributed import gather_in_order, process_share
from vitpose_hf.image_processing_vitpose import VitPoseImageProcessor
from vitpose_hf.pipeline import default_model_path


def launch_two_processes(commands: list[list[str]], folder: Path, timeout: float = 150) -> str:
    """`accelerate launch` on two gloo CPU processes of a script running each `vitpose-hf` command in turn (one
    launch, one start-up, for several commands); its output."""
    script = folder / "commands.py"
    script.write_text("import sys\nfrom vitpose_hf.cli import main\n"
                      f"sys.exit(max(main(arguments) for arguments in {commands!r}))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(29500 + os.getpid() % 1000), str(script)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def one_thread_main(arguments: list[str]) -> int:
    """The command in this process with one thread, as each launched process runs (same floating-point sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(arguments)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Seven synthetic images (an odd count: the processes get unequal shares) with their annotations."""
    root = tmp_path_factory.mktemp("synthetic")
    annotations = generate_synthetic_dataset(root, 7, image_size=(160, 160), seed=3, max_people=3)
    return annotations, root / "images"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = randomize(VitPoseModel(VitPoseConfig(**tiny_config_kwargs())))
    model.save_pretrained(folder)
    VitPoseImageProcessor.from_model_config(model.config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def runs(synthetic, tiny_model_dir, tmp_path_factory):
    """`predict` (tiny model, known boxes) and `evaluate` (the default model, jittered detections) on one process
    in this one and on two launched processes: the folder of each run."""
    annotations, image_dir = synthetic
    folder = tmp_path_factory.mktemp("runs")
    images = sorted(str(path) for path in image_dir.iterdir())
    predict = ["predict", *images, "--model", tiny_model_dir, "--boxes", str(boxes_file(annotations, folder)),
               "--coco-results"]
    evaluate = ["evaluate", "--annotations", str(annotations), "--images", str(image_dir),
                "--detections", str(detections_file(annotations, folder))]
    for name in ("one", "two"):
        (folder / name).mkdir()
    assert one_thread_main(predict + ["--output-dir", str(folder / "one" / "predict")]) == 0
    assert one_thread_main(evaluate + ["--output", str(folder / "one" / "evaluate.json")]) == 0
    printed = launch_two_processes([predict + ["--output-dir", str(folder / "two" / "predict")],
                                    evaluate + ["--output", str(folder / "two" / "evaluate.json")]], folder)
    return folder, images, printed


def detections_file(annotations: Path, folder: Path) -> Path:
    """Jittered annotated boxes, a second box for some people: rescoring and OKS-NMS have work to do."""
    data = json.loads(annotations.read_text())
    rng = np.random.default_rng(0)
    detections = []
    for ann in data["annotations"]:
        for _ in range(1 + int(rng.random() < 0.5)):
            box = (np.asarray(ann["bbox"]) + rng.normal(0, 2, 4)).round(2).tolist()
            detections.append({"image_id": ann["image_id"], "category_id": 1, "bbox": box,
                               "score": round(float(rng.uniform(0.5, 1)), 3)})
    path = folder / "detections.json"
    path.write_text(json.dumps(detections))
    return path


def boxes_file(annotations: Path, folder: Path) -> Path:
    data = json.loads(annotations.read_text())
    names = {image["id"]: image["file_name"] for image in data["images"]}
    boxes = {name: [] for name in names.values()}
    for ann in data["annotations"]:
        boxes[names[ann["image_id"]]].append(ann["bbox"])
    path = folder / "boxes.json"
    path.write_text(json.dumps(boxes))
    return path


def output_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_process_shares_cover_the_input_once():
    class State:
        def __init__(self, rank, world):
            self.process_index, self.num_processes = rank, world

    for count, world in ((7, 2), (3, 4), (10, 3), (0, 2)):
        shares = [list(process_share(count, State(rank, world))) for rank in range(world)]
        assert sum(shares, []) == list(range(count))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert gather_in_order([2, 0, 1], ["c", "a", "b"], 3, None) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="Position 1 of 2 was produced by no process"):
        gather_in_order([0], ["a"], 2, None)


def test_predict_on_two_processes_writes_what_one_writes(runs):
    folder, images, printed = runs
    one, two = output_files(folder / "one" / "predict"), output_files(folder / "two" / "predict")
    assert len(one) == 2 * len(images) + 1
    assert one == two  # every per-image JSON and picture, and the merged results, byte for byte
    results = json.loads(one["coco_results.json"])
    people = [len(json.loads(one[f"{Path(image).stem}.json"])["people"]) for image in images]
    assert len(results) == sum(people) > len(images)
    # Input order: image by image, as one process writes it.
    assert [r["image_id"] for r in results] == [i for i, n in enumerate(people) for _ in range(n)]
    assert printed.count(" people -> ") == len(images)  # the main process alone reports


def test_resume_redoes_only_what_is_missing(synthetic, tiny_model_dir, tmp_path):
    annotations, image_dir = synthetic
    images = sorted(str(path) for path in image_dir.iterdir())
    out = tmp_path / "out"
    arguments = ["predict", *images, "--model", tiny_model_dir, "--boxes", str(boxes_file(annotations, tmp_path)),
                 "--coco-results", "--output-dir", str(out)]
    assert main(arguments) == 0
    first = output_files(out)
    stamps = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}

    (out / "000002.json").unlink()
    (out / "000002.png").unlink()
    (out / "000004.json").write_text(first["000004.json"].decode()[:40])  # a run killed while writing
    assert main(arguments + ["--resume"]) == 0

    assert output_files(out).keys() == first.keys()
    for name in ("000002.json", "000002.png", "000004.json"):
        assert (out / name).read_bytes() == first[name]
    redone = {"000002.json", "000002.png", "000004.json", "000004.png", "coco_results.json"}
    for name, stamp in stamps.items():
        if name not in redone:
            assert (out / name).stat().st_mtime_ns == stamp, name
    assert (out / "000004.png").stat().st_mtime_ns != stamps["000004.png"]  # redone with its JSON
    # Reused images enter the merged results from their JSON (0.01 pixel, 4-decimal scores).
    before, after = json.loads(first["coco_results.json"]), json.loads((out / "coco_results.json").read_text())
    assert [r["image_id"] for r in after] == [r["image_id"] for r in before]
    for old, new in zip(before, after):
        assert np.allclose(old["keypoints"], new["keypoints"], atol=0.006)
        assert new["score"] == pytest.approx(old["score"], abs=2e-4)


def test_evaluate_on_two_processes_equals_one(runs):
    folder, _, printed = runs
    one, two = (json.loads((folder / name / "evaluate.json").read_text()) for name in ("one", "two"))
    assert one["model"] == default_model_path() == two["model"]
    assert "(2 process(es))" in printed
    assert one["metrics"]["AP"] > 0.3  # the embedded model knows these figures
    assert one["metrics"].keys() == two["metrics"].keys()
    for name, value in one["metrics"].items():
        assert two["metrics"][name] == pytest.approx(value, abs=1e-6), name


def test_streamed_parquet_trains_and_evaluates_as_the_files(synthetic, tmp_path, monkeypatch):
    # datasets pauses 5 s after each pass over shuffled parquet shards (a pyarrow thread-shutdown workaround).
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    annotations, image_dir = synthetic
    shards = export_parquet(annotations, image_dir, tmp_path / "parquet")
    columns = {"keypoints": "joints"}

    # Same samples as the annotation file, and the same augmented crops from the embedded pictures.
    table = load_keypoint_hf_dataset(shards, columns=columns)
    files, _ = load_keypoint_samples(annotations, image_dir)
    assert [r["annotation_id"] for r in table] == [s["annotation_id"] for s in files]
    assert np.allclose([r["bbox"] for r in table], [s["bbox"] for s in files], atol=1e-4)
    assert np.allclose([r["keypoints"] for r in table], [s["keypoints"] for s in files], atol=1e-4)
    augment = TopDownAugmentation("coco", input_size=(96, 128), heatmap_size=(24, 32), seed=5)
    row, sample = table[3], {**files[3], "sample_index": files[3]["annotation_id"]}
    assert torch.equal(augment(row)["pixel_values"], augment(sample)["pixel_values"])

    # Streamed: deterministic per (seed, epoch), split between processes without overlap.
    stream = load_keypoint_hf_dataset(shards, columns=columns, streaming=True)
    assert isinstance(stream, datasets.IterableDataset)

    def annotation_ids(epoch: int, rank: int = 0, world_size: int = 1) -> list[int]:
        source = AugmentedStream(stream, augment, seed=1, shuffle_buffer=8, rank=rank, world_size=world_size)
        source.set_epoch(epoch)
        return [int(s["annotation_id"]) for s in source]

    assert annotation_ids(0) == annotation_ids(0) != annotation_ids(1)
    assert sorted(annotation_ids(0)) == sorted(s["annotation_id"] for s in files)
    halves = annotation_ids(0, 0, 2), annotation_ids(0, 1, 2)
    assert sorted(halves[0] + halves[1]) == sorted(s["annotation_id"] for s in files) and all(halves)

    # A few training steps through a plain loop with the model's loss.
    torch.manual_seed(0)
    model = VitPoseModel(VitPoseConfig(**tiny_config_kwargs(image_size=[128, 96])))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    source = AugmentedStream(stream, augment, seed=1, shuffle_buffer=8)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    source.set_epoch(0)
    for batch in DataLoader(source, batch_size=4, collate_fn=collate_keypoints):
        loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"], target_weight=batch["target_weight"],
                     dataset_index=batch["dataset_index"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert len(losses) == -(-len(files) // 4) and all(np.isfinite(losses))  # every sample, once
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    # Evaluation from the streamed rows equals the evaluation from the files.
    embedded = VitPoseModel.from_pretrained(default_model_path())
    processor = VitPoseImageProcessor.from_pretrained(default_model_path())
    from_files = evaluate_keypoint_dataset(embedded, processor, annotations, image_dir, flip_test=False)
    from_rows = evaluate_keypoint_dataset(embedded, processor, rows=load_keypoint_rows(shards, streaming=True),
                                          columns=columns, flip_test=False)
    assert from_files["AP"] > 0.3
    assert from_rows == pytest.approx(from_files, abs=1e-9)


def test_hf_rows_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown keypoint field\(s\) \['joints'\]"):
        load_keypoint_hf_dataset(tmp_path, columns={"joints": "keypoints"})
    from vitpose_hf.data.hf_datasets import coco_from_rows

    with pytest.raises(ValueError, match=r"Row 0 of <rows> has no value in column\(s\) \['bbox'\]"):
        coco_from_rows([{"image": b"x", "image_id": 1, "id": 1, "keypoints": [0, 0, 2]}])


def test_evaluate_names_a_missing_annotation_file(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    assert main(["evaluate", "--annotations", str(missing), "--images", str(tmp_path), "--output",
                 str(tmp_path / "results.json")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()
