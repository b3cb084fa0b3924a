"""Data-loading throughput: samples per second of one worker process for the full training augmentation.

    python -m vitpose_hf.benchmarks.data                  # 256x192 crops, 64x48 targets, one thread

Each sample is what a DataLoader worker does per item: fetch the row from the `datasets.Dataset`, decode the JPEG,
draw the augmentation, warp the 256x192 crop, normalise, and build the 17 UDP target heatmaps. Source images are
synthetic people at two sizes: 256x256 (the synthetic dataset's default) and 640x480 (COCO's typical size).
Workers run torch with one thread, so the benchmark does too.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from .common import markdown_table

from ..data import TopDownAugmentation, generate_synthetic_dataset, load_keypoint_dataset


def run_data_benchmark(
    image_sizes=((256, 256), (640, 480)), num_images: int = 48, passes: int = 3, num_threads: int = 1
) -> list[dict]:
    """One row per source image size: samples/s and ms per sample of one worker (median pass)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    rows = []
    try:
        for width, height in image_sizes:
            with tempfile.TemporaryDirectory() as tmp:
                path = generate_synthetic_dataset(tmp, num_images, layout="coco", seed=0, image_size=(width, height))
                augmentation = TopDownAugmentation("coco", input_size=(256, 192), heatmap_size=(64, 48), seed=0)
                dataset = load_keypoint_dataset(path, Path(tmp) / "images", transform=augmentation)
                dataset[0]  # warm-up
                timings = []
                for epoch in range(passes):
                    augmentation.set_epoch(epoch)
                    start = time.perf_counter()
                    for index in range(len(dataset)):
                        dataset[index]
                    timings.append((time.perf_counter() - start) / len(dataset))
                per_sample = sorted(timings)[len(timings) // 2]
                rows.append({
                    "source image": f"{width}x{height} jpg",
                    "crop": "256x192",
                    "targets": "17 x 64x48",
                    "samples": len(dataset),
                    "ms / sample": per_sample * 1e3,
                    "samples/s per worker": 1.0 / per_sample,
                })
    finally:
        torch.set_num_threads(previous_threads)
    return rows


if __name__ == "__main__":
    print(markdown_table(run_data_benchmark()))
