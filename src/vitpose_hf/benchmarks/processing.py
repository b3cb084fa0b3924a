"""Pre- and post-processing time per person box: vitpose_hf's VitPoseImageProcessor vs transformers' built-in.

    python -m vitpose_hf.benchmarks.processing            # 1, 20 and 100 boxes on a 640x480 image, CPU

Both processors get the same PIL image, the same COCO boxes and the same heatmaps (17 keypoints, 64x48), in the
same process, timed alternately (median of repeats). transformers' `VitPoseImageProcessor` resolves to its PIL/scipy
backend when torchvision is not installed; the table names the class that ran.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image

from .common import interleaved_timings, markdown_table

from ..codec import UDPHeatmapCodec
from ..image_processing_vitpose import VitPoseImageProcessor


def _inputs(num_boxes: int, seed: int = 0) -> tuple[Image.Image, list[list[float]], torch.Tensor]:
    """A 640x480 photo-like image, boxes of people inside it and model-like heatmaps for them."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:480, 0:640]
    image = np.stack([127 + 100 * np.sin(xs / (17 + 5 * c) + ys / (23 + 3 * c)) for c in range(3)], -1)
    image = Image.fromarray((image + rng.normal(0, 10, image.shape)).clip(0, 255).astype(np.uint8))
    width, height = rng.uniform(40, 250, num_boxes), rng.uniform(80, 400, num_boxes)
    x, y = rng.uniform(0, 640 - width), rng.uniform(0, 480 - height)
    boxes = np.stack([x, y, width, height], 1).tolist()
    joints = torch.from_numpy(rng.uniform(10, [182, 246], (num_boxes, 17, 2))).float()
    heatmaps, _ = UDPHeatmapCodec().encode(joints, torch.ones(num_boxes, 17))
    return image, boxes, heatmaps + 0.01 * torch.rand_like(heatmaps)


def run_processing_benchmark(num_boxes_list=(1, 20, 100), repeats: int = 15, num_threads: int | None = None) -> list[dict]:
    """Milliseconds per box for pre-processing (image + boxes -> pixel_values) and post-processing (heatmaps ->
    keypoints in the image), ours vs transformers' built-in, with the speed-up of ours.

    `num_threads` sets torch's intra-op threads for both (the built-in's numpy/scipy work is single-threaded);
    by default torch's own choice is kept.
    """
    import transformers
    from transformers.utils import ModelOutput

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.VitPoseImageProcessor()
    ours = VitPoseImageProcessor()
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    rows = []
    for num_boxes in num_boxes_list:
        image, boxes, heatmaps = _inputs(num_boxes)
        outputs = ModelOutput(heatmaps=heatmaps)
        pre = interleaved_timings(
            {
                "ours": lambda: ours(image, boxes=[boxes], return_tensors="pt"),
                "theirs": lambda: theirs(image, boxes=[boxes], return_tensors="pt"),
            },
            repeats=repeats if num_boxes < 100 else max(3, repeats // 3),
        )
        post = interleaved_timings(
            {
                "ours": lambda: ours.post_process_pose_estimation(outputs, boxes=[boxes]),
                "theirs": lambda: theirs.post_process_pose_estimation(outputs, boxes=[boxes]),
            },
            repeats=repeats if num_boxes < 100 else max(3, repeats // 3),
        )
        rows.append({
            "boxes": num_boxes,
            "pre ours ms/box": 1000 * pre["ours"] / num_boxes,
            "pre transformers ms/box": 1000 * pre["theirs"] / num_boxes,
            "pre speed-up": pre["theirs"] / pre["ours"],
            "post ours ms/box": 1000 * post["ours"] / num_boxes,
            "post transformers ms/box": 1000 * post["theirs"] / num_boxes,
            "post speed-up": post["theirs"] / post["ours"],
            "transformers class": type(theirs).__name__,
            "torch threads": torch.get_num_threads(),
        })
    torch.set_num_threads(previous_threads)
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads for both (default: torch's)")
    args = parser.parse_args()
    print(markdown_table(run_processing_benchmark(args.boxes, args.repeats, args.threads)))
