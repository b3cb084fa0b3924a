"""Top-down keypoint evaluation as the original ViTPose does it: COCO keypoint AP/AR and MPII PCKh.

What the training loop calls, once per dataset:

    metrics = evaluate_keypoint_dataset(
        model, processor, "annotations.json", "images/", layout="coco", dataset_index=0,
        detections=None,          # or a COCO detection-results file: detector boxes, rescoring and OKS-NMS
        flip_test=True, batch_size=32, metric="coco",   # or "pckh" (MPII, with head_boxes=...)
    )
    # {"AP": 0.71, "AP50": ..., "AP75": ..., "APm": ..., "APl": ..., "AR": ..., "AR50": ..., ...}

The steps are public so they can be used on their own:

- `predict_keypoints(model, processor, samples, ...)`: samples (image path + person box, as produced by
  `vitpose_hf.data.load_keypoint_samples` or `load_detection_boxes`) -> COCO keypoint results. Images are read once,
  crops of many images share a forward pass, heatmaps are decoded by `VitPoseImageProcessor`, each head cropped and
  decoded with its own codec (`model.config.head_codec`).
- `rescore(...)`: a person"s score is its box score times the mean of its keypoint scores above 0.2.
- `oks_nms(results, ...)`: per image, drop people whose OKS with a better-scoring one exceeds 0.9 (mmpose 0.x);
  `keypoint_oks(...)` is its OKS of one person against others.
- `coco_keypoint_eval(coco_gt, results, sigmas)`: pycocotools" COCOeval with the layout"s OKS sigmas (any K).
- `pckh(...)` and `mpii_head_sizes(...)`: MPII"s PCKh with head boxes (SC_BIAS 0.6).

All scores are fractions in [0, 1] (the original prints them multiplied by 100). pycocotools reports -1 for an
area range without ground truth; that is kept.
"""


from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "coco_metric": ("COCO_METRIC_NAMES", "coco_keypoint_eval"),
    "dataset": ("evaluate_keypoint_dataset",),
    "detections": ("load_detection_boxes",),
    "distributed": ("gather_in_order", "process_share"),
    "pckh_metric": ("load_head_boxes", "mpii_head_sizes", "pckh"),
    "nms": ("keypoint_oks", "oks_nms", "rescore"),
    "prediction": ("predict_keypoints",),
})
