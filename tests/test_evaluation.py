"""Evaluation: COCO keypoint AP against OKS computed from its formula, OKS-NMS against the original algorithm written
out in numpy, rescoring, PCKh, detection files, batched prediction against a by-hand processor + model run, and the
`evaluate` metric loaded offline."""

import os

os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")

import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from support.models import tiny_config_kwargs

from vitpose_hf import VitPoseConfig, VitPoseModel, get_layout
from vitpose_hf.data import generate_synthetic_dataset, load_keypoint_samples
from vitpose_hf.data.transforms import load_image
from vitpose_hf.evaluation import (
    COCO_METRIC_NAMES,
    coco_keypoint_eval,
    evaluate_keypoint_dataset,
    load_detection_boxes,
    mpii_head_sizes,
    oks_nms,
    pckh,
    predict_keypoints,
    rescore,
)
from vitpose_hf.image_processing_vitpose import VitPoseImageProcessor
from vitpose_hf.keypoints import KeypointLayout

COCO_SIGMAS = np.array([.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087,
                        .089, .089])
THRESHOLDS = np.linspace(0.5, 0.95, 10)


def oks_formula(predicted, truth, visible, area: float, sigmas) -> float:
    """COCO's object keypoint similarity: mean over labelled joints of exp(-d^2 / (2 s^2 k^2)), s^2 = area,
    k = 2 sigma."""
    d2 = ((predicted - truth) ** 2).sum(-1)
    return float(np.exp(-d2 / (2 * area * (2 * sigmas) ** 2))[visible].mean())


def ground_truth(people: list[tuple[int, np.ndarray, list[float]]], num_images: int) -> dict:
    """A COCO dict from (image_id, (K, 3) keypoints, xywh box) triples."""
    annotations = []
    for image_id, keypoints, box in people:
        annotations.append({
            "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": box,
            "area": box[2] * box[3], "keypoints": keypoints.reshape(-1).tolist(),
            "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        })
    return {"images": [{"id": i + 1, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in range(num_images)],
            "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}


def random_person(rng: np.random.Generator, k: int, box: list[float]) -> np.ndarray:
    x, y, w, h = box
    keypoints = np.stack([x + rng.uniform(0, w, k), y + rng.uniform(0, h, k), np.full(k, 2.0)], axis=1)
    keypoints[rng.random(k) < 0.2] = 0.0  # unlabelled
    keypoints[0, 2] = 2.0
    return keypoints


def as_results(people: list[tuple[int, np.ndarray, list[float]]], offsets: np.ndarray | None = None, score=0.9):
    results = []
    for n, (image_id, keypoints, _) in enumerate(people):
        predicted = keypoints.copy()
        predicted[:, 2] = 0.8
        if offsets is not None:
            predicted[:, :2] += offsets[n]
        results.append({"image_id": image_id, "category_id": 1, "keypoints": predicted.reshape(-1).tolist(),
                        "score": score})
    return results


@pytest.fixture
def crowd():
    rng = np.random.default_rng(0)
    boxes = [[10, 20, 60, 120], [90, 30, 50, 100], [20, 10, 120, 160], [5, 5, 40, 80]]
    people = [(1, random_person(rng, 17, boxes[0]), boxes[0]), (1, random_person(rng, 17, boxes[1]), boxes[1]),
              (2, random_person(rng, 17, boxes[2]), boxes[2]), (3, random_person(rng, 17, boxes[3]), boxes[3])]
    return people


# COCO keypoint AP --------------------------------------------------------------------------------------------


def test_perfect_predictions_score_one_from_path_dict_and_coco(crowd, tmp_path, capsys):
    gt = ground_truth(crowd, 3)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    coco = COCO()
    coco.dataset = json.loads(path.read_text())
    coco.createIndex()
    capsys.readouterr()
    for source in (gt, path, str(path), coco):
        metrics = coco_keypoint_eval(source, as_results(crowd), COCO_SIGMAS)
        assert list(metrics) == list(COCO_METRIC_NAMES)
        assert all(isinstance(v, float) for v in metrics.values())
        for name in ("AP", "AP50", "AP75", "AR", "AR50", "AR75"):
            assert metrics[name] == pytest.approx(1.0)
    assert capsys.readouterr().out == ""  # pycocotools' prints are silenced
    coco_keypoint_eval(gt, as_results(crowd), COCO_SIGMAS, verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_hand_built_oks_gives_the_ap_of_each_threshold():
    # One person, one prediction: AP at threshold t is 1 if OKS >= t else 0, so AP = share of the 10 thresholds met.
    rng = np.random.default_rng(1)
    box = [40.0, 30.0, 50.0, 100.0]
    truth = random_person(rng, 17, box)
    visible = truth[:, 2] > 0
    direction = rng.normal(size=(17, 2))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    for shift in (0.5, 2.0, 3.5, 6.0):
        offsets = direction * shift
        oks = oks_formula(truth[:, :2] + offsets, truth[:, :2], visible, box[2] * box[3], COCO_SIGMAS)
        assert np.abs(THRESHOLDS - oks).min() > 1e-3  # away from a threshold, so the expectation is unambiguous
        metrics = coco_keypoint_eval(ground_truth([(1, truth, box)], 1), as_results([(1, truth, box)], offsets[None]),
                                     COCO_SIGMAS)
        assert metrics["AP"] == pytest.approx(np.mean(oks >= THRESHOLDS))
        assert metrics["AP50"] == pytest.approx(float(oks >= 0.5))
        assert metrics["AP75"] == pytest.approx(float(oks >= 0.75))
        assert metrics["AR"] == pytest.approx(np.mean(oks >= THRESHOLDS))
        assert metrics["APm"] == metrics["AP"] and metrics["APl"] == -1.0  # area 5000: COCO's medium range


def test_custom_layout_sigmas_are_used_as_the_formula_says():
    layout = KeypointLayout("toy5", ("a", "b", "c", "d", "e"), flip_pairs=((1, 2),),
                            oks_sigmas=(0.05, 0.1, 0.1, 0.2, 0.3))
    box = [0.0, 0.0, 100.0, 100.0]
    truth = np.array([[20, 20, 2], [40, 30, 2], [60, 30, 2], [50, 60, 1], [50, 90, 2]], dtype=float)
    offsets = np.array([[8.0, 0.0], [0.0, 10.0], [-12.0, 4.0], [14.0, 12.0], [-18.0, 0.0]])
    results = as_results([(1, truth, box)], offsets[None])
    gt = ground_truth([(1, truth, box)], 1)
    aps = []
    for sigmas in (np.array(layout.oks_sigmas), np.array(layout.oks_sigmas) * 0.5, np.array(layout.oks_sigmas) * 2):
        oks = oks_formula(truth[:, :2] + offsets, truth[:, :2], truth[:, 2] > 0, 100.0 * 100.0, sigmas)
        assert np.abs(THRESHOLDS - oks).min() > 1e-3
        aps.append(coco_keypoint_eval(gt, results, sigmas)["AP"])
        assert aps[-1] == pytest.approx(np.mean(oks >= THRESHOLDS))
    assert aps[1] < aps[0] < aps[2]  # tighter sigmas, lower AP
    with pytest.raises(ValueError, match="Result 0 has 15 keypoint values; 17 sigmas"):
        coco_keypoint_eval(gt, results, COCO_SIGMAS)


def test_ranking_false_positives_and_empty_results(crowd):
    gt = ground_truth(crowd, 3)
    good = as_results(crowd, score=0.9)
    far = as_results(crowd[:1], offsets=np.full((1, 17, 2), 40.0), score=0.95)  # a confident miss on image 1
    with_miss = coco_keypoint_eval(gt, good + far, COCO_SIGMAS)
    assert with_miss["AR"] == pytest.approx(1.0)
    # Precision at recall r is 4/5 everywhere (the miss ranks first), so every 101-point AP is 0.8.
    assert with_miss["AP"] == pytest.approx(0.8)
    assert coco_keypoint_eval(gt, [], COCO_SIGMAS) == {name: 0.0 for name in COCO_METRIC_NAMES}
    with pytest.raises(ValueError, match="image id 7"):
        coco_keypoint_eval(gt, [dict(good[0], image_id=7)], COCO_SIGMAS)


# Rescoring and OKS-NMS ---------------------------------------------------------------------------------------


def test_rescore_is_box_score_times_mean_confident_keypoint_score():
    rng = np.random.default_rng(2)
    scores = rng.random((6, 17))
    scores[2] = 0.1  # no confident keypoint
    scores[3, :5] = 0.2  # exactly at the threshold: not counted
    box_scores = rng.random(6)
    expected = []
    for person, box_score in zip(scores, box_scores):  # the original's loop
        total, count = 0.0, 0
        for s in person:
            if s > 0.2:
                total, count = total + s, count + 1
        expected.append(box_score * (total / count if count else 0.0))
    np.testing.assert_allclose(rescore(scores, box_scores), expected, rtol=1e-12)
    assert rescore(scores, box_scores)[2] == 0.0


def original_area(box, aspect_ratio=0.75, padding=1.25):
    """mmpose 0.x `_xywh2cs` then `np.prod(scale * 200)`: the area the original gives OKS-NMS."""
    x, y, w, h = box
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / 200.0, h / 200.0]) * padding
    return np.prod(scale * 200.0)


def original_oks_iou(g, d, a_g, a_d, sigmas, vis_thr):
    variances = (sigmas * 2) ** 2
    xg, yg, vg = g[0::3], g[1::3], g[2::3]
    ious = np.zeros(len(d), dtype=np.float32)
    for n in range(len(d)):
        xd, yd, vd = d[n, 0::3], d[n, 1::3], d[n, 2::3]
        e = ((xd - xg) ** 2 + (yd - yg) ** 2) / variances / ((a_g + a_d[n]) / 2 + np.spacing(1)) / 2
        if vis_thr is not None:
            e = e[list(vg > vis_thr) and list(vd > vis_thr)]
        ious[n] = np.sum(np.exp(-e)) / len(e) if len(e) != 0 else 0.0
    return ious


def original_oks_nms(people, thr, sigmas, vis_thr):
    scores = np.array([p["score"] for p in people])
    kpts = np.array([np.asarray(p["keypoints"]) for p in people])
    areas = np.array([original_area(p["bbox"]) for p in people])
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(i)
        overlap = original_oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, vis_thr)
        order = order[np.where(overlap <= thr)[0] + 1]
    return keep


@pytest.mark.parametrize("threshold, vis_thr", [(0.9, None), (0.5, None), (0.8, 0.2)])
def test_oks_nms_matches_the_original_algorithm(threshold, vis_thr):
    rng = np.random.default_rng(3)
    results = []
    for image_id in range(1, 6):
        bases = [rng.uniform(0, 200, (17, 2)) for _ in range(3)]
        for _ in range(12):  # near-duplicates of a few people, as overlapping detector boxes give
            base = bases[rng.integers(3)]
            xy = base + rng.normal(scale=rng.choice([0.5, 3.0, 10.0]), size=(17, 2))
            s = rng.random(17)
            box = [float(xy[:, 0].min()), float(xy[:, 1].min()), float(np.ptp(xy[:, 0]) + 1),
                   float(np.ptp(xy[:, 1]) + 1)]
            results.append({"image_id": image_id, "keypoints": np.concatenate([xy, s[:, None]], 1).reshape(-1).tolist(),
                            "score": float(rng.random()), "bbox": box})
    rng.shuffle(results)
    kept = oks_nms(results, threshold, COCO_SIGMAS, vis_threshold=vis_thr)
    expected = []
    for image_id in dict.fromkeys(r["image_id"] for r in results):
        people = [r for r in results if r["image_id"] == image_id]
        expected += [people[i] for i in original_oks_nms(people, threshold, COCO_SIGMAS, vis_thr)]
    assert [(r["image_id"], r["score"]) for r in kept] == [(r["image_id"], r["score"]) for r in expected]
    assert 5 < len(kept) < len(results)


# PCKh ------------------------------------------------------------------------------------------------------


def test_pckh_hand_example():
    assert mpii_head_sizes([[0, 0, 30, 40], [10, 10, 16, 18]]).tolist() == pytest.approx([30.0, 6.0])
    assert mpii_head_sizes(np.array([[[0, 0], [30, 40]]])).tolist() == pytest.approx([30.0])
    truth = np.zeros((2, 16, 2))
    visible = np.ones((2, 16), dtype=bool)
    visible[1, 0] = False  # person 1's right ankle is not labelled
    head = np.array([20.0, 10.0])  # threshold 0.5: within 10 and 5 pixels
    errors = np.zeros((2, 16))
    errors[0, 0] = 12.0  # wrong
    errors[0, 9] = 10.0  # exactly at the threshold: right (<=)
    errors[1, 0] = 100.0  # not labelled: ignored
    errors[1, 6] = 50.0  # pelvis: wrong but not in the mean
    errors[1, 12] = 6.0  # right shoulder: wrong
    predictions = truth + np.stack([errors, np.zeros_like(errors)], -1)
    out = pckh(predictions, truth, visible, head, threshold=0.5)
    per_joint = np.ones(16)
    per_joint[0] = 0.0  # 0 of 1 visible
    per_joint[6] = 0.5
    per_joint[12] = 0.5
    assert out["per_joint"] == pytest.approx(per_joint.tolist())
    # Mean over the 14 joints without pelvis and thorax, pooled: 27 visible, 2 wrong (ankle of 0, shoulder of 1).
    assert out["PCKh"] == pytest.approx(25 / 27)
    assert out["Ankle"] == pytest.approx(0.5) and out["Shoulder"] == pytest.approx(0.75) and out["Head"] == 1.0
    assert pckh(predictions, truth, visible, head, threshold=1.0)["PCKh"] == 1.0
    with pytest.raises(ValueError, match="Person 1 has head size 0"):
        pckh(predictions, truth, visible, np.array([20.0, 0.0]))


# Detection files -------------------------------------------------------------------------------------------


def test_load_detection_boxes_filters_and_names_bad_entries(tmp_path):
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [1, 2, 30, 40], "score": 0.9},  # not a person
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.05},
    ]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(detections))
    samples = load_detection_boxes(path, score_threshold=0.1, image_paths={1: "a.jpg", 2: "b.jpg"})
    assert samples == [{"image_path": "a.jpg", "image_id": 1, "bbox": [1.0, 2.0, 30.0, 40.0], "score": 0.9,
                        "detection_index": 0}]
    assert len(load_detection_boxes(detections)) == 2
    bad = detections + [{"image_id": 3, "bbox": [0, 0, 10], "score": 0.5}]
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"detection entry 3 in '.*dets\.json' must have shape \(n, 4\)"):
        load_detection_boxes(path)
    with pytest.raises(ValueError, match="Detection entry 1 .* needs 'image_id', 'bbox' and 'score'"):
        load_detection_boxes([detections[0], {"image_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="Detection entry 2 .* image id 2 is not in the ground-truth"):
        load_detection_boxes(detections, image_paths={1: "a.jpg"})
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_detection_boxes(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ValueError, match="broken.json' is not valid JSON"):
        load_detection_boxes(tmp_path / "broken.json")


# Prediction with a model -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    torch.manual_seed(0)
    config = VitPoseConfig(**tiny_config_kwargs(image_size=[64, 48], patch_size=8, patch_stride=8))
    model = VitPoseModel(config).eval()
    processor = VitPoseImageProcessor.from_model_config(config)
    root = tmp_path_factory.mktemp("synthetic")
    annotation_file = generate_synthetic_dataset(root, 3, seed=11, image_size=(96, 96))
    samples, _ = load_keypoint_samples(annotation_file, root / "images")
    return model, processor, annotation_file, root / "images", samples


def test_predict_keypoints_matches_processor_and_model_by_hand(tiny_setup):
    model, processor, _, _, samples = tiny_setup
    assert len({s["image_id"] for s in samples}) >= 2 and len(samples) >= 4
    samples = [dict(s, score=0.5 + 0.1 * i) for i, s in enumerate(samples)]  # as detector boxes would have
    model.train()
    results = predict_keypoints(model, processor, samples, batch_size=3, flip_test=True)
    assert model.training  # mode restored
    assert len(results) == len(samples)
    for sample, result in zip(samples, results):
        assert set(result) == {"image_id", "category_id", "keypoints", "score", "bbox"}
        assert result["image_id"] == sample["image_id"] and result["category_id"] == 1
        assert len(result["keypoints"]) == 51 and result["bbox"] == pytest.approx(sample["bbox"])
        triplets = np.asarray(result["keypoints"]).reshape(17, 3)
        assert result["score"] == pytest.approx(float(rescore(triplets[None, :, 2], [sample["score"]])[0]))

    # By hand for the last image: crop its boxes, run the model on the crops and their mirrors (one batch, as
    # documented), decode. DARK refinement magnifies float noise on a random model's flat heatmaps, so the by-hand
    # run uses the same forward batch as `predict_keypoints` on this image's samples.
    image_id = samples[-1]["image_id"]
    mine = [i for i, s in enumerate(samples) if s["image_id"] == image_id]
    image = load_image(samples[mine[0]]["image_path"])
    boxes = [samples[i]["bbox"] for i in mine]
    model.eval()
    with torch.no_grad():
        crops = processor(image, boxes=[boxes])["pixel_values"]
        both = model(pixel_values=torch.cat([crops, processor.flip_pixel_values(crops)])).heatmaps
        single = model(pixel_values=crops[:1]).heatmaps
    people = processor.post_process_pose_estimation(both[:len(mine)], boxes=[boxes], flipped_outputs=both[len(mine):],
                                                    dataset="coco")[0]
    alone = predict_keypoints(model, processor, [samples[i] for i in mine], batch_size=len(mine))
    for i, person, result in zip(mine, people, alone):
        triplets = np.asarray(result["keypoints"]).reshape(17, 3)
        np.testing.assert_allclose(triplets[:, :2], person["keypoints"].numpy(), rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(triplets[:, 2], person["scores"].numpy(), rtol=1e-6)
        # Batched with other images' crops (and split across forwards): the same people, in sample order.
        np.testing.assert_allclose(results[i]["keypoints"], result["keypoints"], rtol=1e-3, atol=1e-2)
        np.testing.assert_allclose(results[i]["keypoints"][2::3], result["keypoints"][2::3], rtol=1e-5)

    plain = predict_keypoints(model, processor, samples[mine[0]:mine[0] + 1], flip_test=False)
    expected = processor.post_process_pose_estimation(single, boxes=[boxes[:1]])[0][0]
    np.testing.assert_allclose(np.asarray(plain[0]["keypoints"]).reshape(17, 3)[:, :2], expected["keypoints"],
                               rtol=1e-6, atol=1e-4)
    with pytest.raises(ValueError, match="Box 0 of sample 1 .* is invalid"):
        predict_keypoints(model, processor, [samples[0], dict(samples[1], bbox=[0, 0, 0, 5])])


def test_evaluate_keypoint_dataset_ground_truth_and_detection_boxes(tiny_setup, tmp_path):
    model, processor, annotation_file, image_root, samples = tiny_setup
    metrics = evaluate_keypoint_dataset(model, processor, annotation_file, image_root, batch_size=4,
                                        results_file=tmp_path / "results.json")
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == len(samples)
    assert metrics == coco_keypoint_eval(annotation_file, results, get_layout("coco").oks_sigmas)

    # Detector boxes: each annotated box twice (the copy scoring lower): OKS-NMS removes the copies.
    detections = [{"image_id": s["image_id"], "category_id": 1, "bbox": s["bbox"], "score": 0.9} for s in samples]
    detections += [dict(d, score=0.8) for d in detections]
    with_detections = evaluate_keypoint_dataset(model, processor, annotation_file, image_root, detections=detections,
                                                results_file=tmp_path / "det_results.json")
    kept = json.loads((tmp_path / "det_results.json").read_text())
    assert len(kept) <= len(samples)
    assert with_detections == coco_keypoint_eval(annotation_file, kept, get_layout("coco").oks_sigmas)

    head_boxes = np.array([[0, 0, 20, 15]] * (max(s["annotation_id"] for s in samples)), dtype=float)
    mpii_style = evaluate_keypoint_dataset(model, processor, annotation_file, image_root, metric="pckh",
                                           head_boxes=head_boxes)
    truth = np.asarray([s["keypoints"] for s in samples])
    predicted = np.asarray([r["keypoints"] for r in results]).reshape(len(samples), 17, 3)
    expected = pckh(predicted[..., :2], truth[..., :2], truth[..., 2] > 0, np.full(len(samples), 15.0))
    assert mpii_style["PCKh"] == pytest.approx(expected["PCKh"])
    with pytest.raises(ValueError, match="metric='pckh' needs head_boxes"):
        evaluate_keypoint_dataset(model, processor, annotation_file, image_root, metric="pckh")


# The evaluate metric ---------------------------------------------------------------------------------------


def test_evaluate_metric_loads_offline_and_matches_coco_keypoint_eval(crowd):
    from vitpose_hf.metrics import load_keypoint_metric

    rng = np.random.default_rng(4)
    gt = ground_truth(crowd, 3)
    results = as_results(crowd, offsets=rng.normal(scale=3.0, size=(len(crowd), 17, 2)))
    results += as_results(crowd[2:3], offsets=np.full((1, 17, 2), 30.0), score=0.95)
    for r in results:
        r["score"] = float(rng.random())
        r["bbox"] = [0.0, 0.0, 1.0, 1.0]  # extra keys are ignored
    expected = coco_keypoint_eval(gt, results, COCO_SIGMAS)
    assert 0.0 < expected["AP"] < 1.0

    metric = load_keypoint_metric()
    per_image = {1: [], 2: [], 3: []}
    references = {1: [], 2: [], 3: []}
    for r in results:
        per_image[r["image_id"]].append(r)
    for ann in gt["annotations"]:  # optional keys left out: area, iscrowd, num_keypoints come from their defaults
        references[ann["image_id"]].append({key: ann[key] for key in ("image_id", "keypoints", "bbox", "area")})
    metric.add_batch(predictions=[per_image[1], per_image[2]], references=[references[1], references[2]])
    metric.add(prediction=per_image[3], reference=references[3])
    assert metric.compute(sigmas=COCO_SIGMAS.tolist()) == pytest.approx(expected)
    assert metric.compute(predictions=list(per_image.values()), references=list(references.values()),
                          sigmas="coco") == pytest.approx(expected)
