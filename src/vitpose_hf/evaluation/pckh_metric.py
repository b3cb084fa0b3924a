"""MPII PCKh with head boxes (SC_BIAS 0.6), as the original reports it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


MPII_SC_BIAS = 0.6
# MPII joint groups the original reports (indices in the MPII layout) and the joints left out of its mean.
MPII_JOINT_GROUPS = {
    "Head": (9,), "Shoulder": (12, 13), "Elbow": (11, 14), "Wrist": (10, 15), "Hip": (2, 3), "Knee": (1, 4),
    "Ankle": (0, 5),
}
MPII_EXCLUDED_FROM_MEAN = (6, 7)  # pelvis, thorax


def mpii_head_sizes(head_boxes: np.ndarray | Sequence) -> np.ndarray:
    """MPII head boxes (N, 4) `[x1, y1, x2, y2]` or (N, 2, 2) -> PCKh normalisers: SC_BIAS 0.6 x box diagonal."""
    boxes = np.asarray(head_boxes, dtype=np.float64)
    if boxes.ndim == 3 and boxes.shape[1:] == (2, 2):
        boxes = boxes.reshape(-1, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"Head boxes must have shape (N, 4) or (N, 2, 2), got {boxes.shape}.")
    return MPII_SC_BIAS * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=1)


def pckh(
    predictions: np.ndarray,
    ground_truth: np.ndarray,
    visible: np.ndarray,
    head_sizes: np.ndarray,
    threshold: float = 0.5,
    mean_joints: Sequence[int] | None = None,
) -> dict[str, Any]:
    """PCKh: the share of visible joints predicted within `threshold` x head size of the truth (MPII's protocol).

    Args:
        predictions, ground_truth: (N, K, 2) joint positions.
        visible: (N, K) which ground-truth joints count.
        head_sizes: (N,) the normaliser per person, already SC_BIAS x head diagonal (`mpii_head_sizes`).
        mean_joints: joints averaged into "PCKh"; default: all, except pelvis and thorax for the 16 MPII joints, as
            the original does (its mean weights joints by their visible counts, i.e. pools them).

    Returns:
        `{"PCKh": mean, "per_joint": [K values]}` and, for 16 joints, MPII's groups ("Head", "Shoulder", ...: the
        mean of the left and right joint). A joint that is never visible scores 0.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    visible = np.asarray(visible).astype(bool)
    head_sizes = np.asarray(head_sizes, dtype=np.float64).reshape(-1)
    if predictions.shape != ground_truth.shape or predictions.ndim != 3 or predictions.shape[-1] != 2:
        raise ValueError(
            f"predictions {predictions.shape} and ground_truth {ground_truth.shape} must both be (N, K, 2)."
        )
    n, k = predictions.shape[:2]
    if visible.shape != (n, k) or head_sizes.shape != (n,):
        raise ValueError(
            f"visible must be ({n}, {k}) and head_sizes ({n},), got {visible.shape} and {head_sizes.shape}."
        )
    bad = visible.any(axis=1) & ~(np.isfinite(head_sizes) & (head_sizes > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"Person {i} has head size {head_sizes[i]}: head sizes must be positive.")
    errors = np.linalg.norm(predictions - ground_truth, axis=-1) / np.where(head_sizes > 0, head_sizes, 1.0)[:, None]
    correct = (errors <= threshold) & visible
    counts = visible.sum(axis=0)
    per_joint = np.divide(correct.sum(axis=0), counts, out=np.zeros(k), where=counts > 0)
    if mean_joints is None:
        mean_joints = [j for j in range(k) if k != 16 or j not in MPII_EXCLUDED_FROM_MEAN]
    mean_joints = list(mean_joints)
    total = counts[mean_joints].sum()
    out: dict[str, Any] = {"PCKh": float(correct[:, mean_joints].sum() / total) if total else 0.0,
                           "per_joint": per_joint.tolist()}
    if k == 16:
        out.update({name: float(per_joint[list(joints)].mean()) for name, joints in MPII_JOINT_GROUPS.items()})
    return out


def load_head_boxes(head_boxes: str | Path | np.ndarray | Sequence) -> np.ndarray:
    """MPII head boxes as (N, 4) `[x1, y1, x2, y2]`, in the order of the annotation file's people.

    Accepts an array, a `.json` / `.npy` file of boxes, or mmpose's `mpii_gt_val.mat` (`headboxes_src`, (2, 2, N)).
    """
    if isinstance(head_boxes, (str, Path)):
        path = Path(head_boxes)
        if not path.is_file():
            raise FileNotFoundError(f"Head-box file {str(path)!r} does not exist.")
        if path.suffix == ".mat":
            from scipy.io import loadmat

            data = loadmat(str(path))
            if "headboxes_src" not in data:
                raise ValueError(f"Head-box file {str(path)!r} has no 'headboxes_src'.")
            head_boxes = np.transpose(data["headboxes_src"], (2, 0, 1))
        elif path.suffix == ".npy":
            head_boxes = np.load(path)
        else:
            head_boxes = json.loads(path.read_text())
    boxes = np.asarray(head_boxes, dtype=np.float64)
    return boxes.reshape(-1, 4) if boxes.ndim == 3 else boxes

