"""End-to-end cost of the keypoint-detection pipeline beyond the model itself.

    python -m vitpose_hf.benchmarks.pipeline                    # ViTPose-S sized, random weights, 10 people, CPU
    python -m vitpose_hf.benchmarks.pipeline --people 10 --batch-size 16 --no-flip --device cuda

One image with N people (given boxes) goes through `pipeline("keypoint-detection")`: image loading, cropping,
batching, the model forward, flip-test merging and decoding. The model forward is timed from inside (forward hooks),
so "outside" is everything the pipeline adds around it. Target: <= 10% on CPU for a ViTPose-S sized model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image
from transformers import pipeline

from .. import VitPoseConfig, VitPoseModel


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _scene(num_people: int, width: int = 640, height: int = 480, seed: int = 0) -> tuple[Image.Image, list]:
    """A noise picture and `num_people` person-sized xywh boxes spread over it."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    boxes = []
    for i in range(num_people):
        w, h = rng.uniform(0.1, 0.2) * width, rng.uniform(0.4, 0.8) * height
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        boxes.append([float(x), float(y), float(w), float(h)])
    return image, boxes


def run_pipeline_benchmark(
    num_people: int = 10, size: str = "small", batch_size: int = 8, flip_test: bool = True, device: str = "cpu",
    repeats: int = 10, warmup: int = 2,
) -> dict:
    """Median seconds of one pipeline call and of the model forwards inside it; the share spent outside them."""
    torch.manual_seed(0)
    model = VitPoseModel(VitPoseConfig.from_variant(f"vitpose-{size}")).eval()
    pose = pipeline("keypoint-detection", model=model, device=device, batch_size=batch_size)
    run_device = pose.device
    image, boxes = _scene(num_people)

    # Wall-clock and process CPU seconds (all threads) of each forward. CPU time is what the pipeline's own code
    # costs even on a machine shared with other jobs, where wall-clock gaps are partly someone else's.
    forward_seconds: list[tuple[float, float]] = []
    started: list[tuple[float, float]] = []

    def before(module, args, kwargs):
        _synchronize(run_device)
        started.append((time.perf_counter(), time.process_time()))

    def after(module, args, kwargs, output):
        _synchronize(run_device)
        wall, cpu = started.pop()
        forward_seconds.append((time.perf_counter() - wall, time.process_time() - cpu))

    hooks = [
        model.register_forward_pre_hook(before, with_kwargs=True),
        model.register_forward_hook(after, with_kwargs=True),
    ]
    totals, forwards, cpu_totals, cpu_forwards = [], [], [], []
    try:
        for i in range(warmup + repeats):
            forward_seconds.clear()
            start, cpu_start = time.perf_counter(), time.process_time()
            people = pose(image, boxes=boxes, flip_test=flip_test)
            _synchronize(run_device)
            total, cpu_total = time.perf_counter() - start, time.process_time() - cpu_start
            if i >= warmup:
                totals.append(total)
                forwards.append(sum(wall for wall, _ in forward_seconds))
                cpu_totals.append(cpu_total)
                cpu_forwards.append(sum(cpu for _, cpu in forward_seconds))
            assert len(people) == num_people
    finally:
        for hook in hooks:
            hook.remove()
    outside = [t - f for t, f in zip(totals, forwards)]
    cpu_outside_share = [(t - f) / t for t, f in zip(cpu_totals, cpu_forwards)]
    total, forward = statistics.median(totals), statistics.median(forwards)
    return {
        "model": f"vitpose-{size} (hidden {model.config.hidden_size}, depth {model.config.num_hidden_layers})",
        "device": run_device.type,
        "threads": torch.get_num_threads(),
        "people": num_people,
        "flip test": flip_test,
        "batch size": batch_size,
        "pipeline ms": 1000 * total,
        "forward ms": 1000 * forward,
        "outside forward ms": 1000 * statistics.median(outside),
        "outside share %": 100 * statistics.median(o / t for o, t in zip(outside, totals)),
        "outside share % (CPU time)": 100 * statistics.median(cpu_outside_share) if run_device.type == "cpu" else None,
    }


def markdown_table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10)
    parser.add_argument("--size", default="small", choices=["small", "base", "large", "huge"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-flip", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    row = run_pipeline_benchmark(
        args.people, args.size, args.batch_size, not args.no_flip, args.device, args.repeats
    )
    print(markdown_table([row]))


if __name__ == "__main__":
    main()
