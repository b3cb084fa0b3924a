"""Hugging Face `evaluate` metrics shipped with the package, loadable without the Hub.

    from vitpose_hf.metrics import load_keypoint_metric
    metric = load_keypoint_metric()            # same as evaluate.load(KEYPOINT_AP_PATH)
    metric.compute(predictions=..., references=..., sigmas="coco")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KEYPOINT_AP_PATH = Path(__file__).resolve().parent / "keypoint_ap.py"


def load_keypoint_metric(**kwargs: Any) -> Any:
    """The COCO keypoint AP metric (`keypoint_ap.py`) through `evaluate.load` on its local file: no network needed.

    Keyword arguments go to `evaluate.load` (e.g. `num_process`, `process_id`, `cache_dir`); a single process keeps
    its predictions in memory unless `keep_in_memory=False` is given.
    """
    import evaluate

    kwargs.setdefault("keep_in_memory", kwargs.get("num_process", 1) == 1)
    return evaluate.load(str(KEYPOINT_AP_PATH), **kwargs)


__all__ = ["KEYPOINT_AP_PATH", "load_keypoint_metric"]
