"""What every benchmark suite shares: interleaved timing (peers alternate, medians) and markdown tables."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interleaved_timings(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, alternating between them so that background load hits all alike.

    The order is reversed on every other round so that no function always runs first (or always after another).
    """
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times = {name: [] for name in functions}
    items = list(functions.items())
    for round_index in range(repeats):
        for name, fn in items if round_index % 2 == 0 else items[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
