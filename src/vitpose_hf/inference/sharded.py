"""`vitpose-hf predict` over processes: each takes a contiguous share of the images, skips (with `--resume`) those
whose outputs are complete, and the main process receives every image's result in input order.

The per-image files do not depend on the process that wrote them, so N processes write exactly what one writes; the
merged `coco_results.json` is written by the main process once all have finished (the gather is the barrier).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..evaluation.distributed import gather_in_order, is_main_process, process_share

T = TypeVar("T")


def launched_process_state() -> Any | None:
    """accelerate's `PartialState` when this process is one of several (`accelerate launch`, torchrun); else None,
    without initialising anything."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Without an accelerator, processes started by `accelerate launch --multi_gpu` / torchrun join over gloo.
    return PartialState(cpu=not torch.accelerator.is_available())


def process_device(process_state: Any | None) -> str | None:
    """The device of this process under `accelerate launch` (its GPU, or cpu); None (the pipeline's choice) alone."""
    return None if process_state is None else str(process_state.device)


def outputs_complete(paths: Sequence[str | Path]) -> bool:
    """Whether an image's outputs are all there: every file present and every `.json` parseable.

    The JSON is written after the picture, so a parseable JSON next to its picture means the image was finished;
    a run killed mid-image leaves a missing or truncated file, and the image is redone.
    """
    for path in map(Path, paths):
        if not path.is_file():
            return False
        if path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return False
    return True


def iter_share(
    count: int,
    run: Callable[[int], T],
    outputs: Callable[[int], Sequence[str | Path]],
    reuse: Callable[[int], T] | None = None,
    process_state: Any | None = None,
) -> Iterator[tuple[int, T]]:
    """(i, `run(i)`) for this process's share of `range(count)`, one at a time (or `reuse(i)` where `reuse` is given
    and the outputs of `i` are complete): a single process reports each item as soon as it is done."""
    for index in process_share(count, process_state):
        complete = reuse is not None and outputs_complete(outputs(index))
        yield index, (reuse(index) if complete else run(index))


def gather_share(done: Iterable[tuple[int, T]], count: int, process_state: Any | None = None) -> list[T] | None:
    """The (i, value) pairs of every process's share (`iter_share`), all values in order of i on the main process,
    None on the others. Every process must call this (the gather is collective)."""
    positions, values = [], []
    for index, value in done:
        positions.append(index)
        values.append(value)
    ordered = gather_in_order(positions, values, count, process_state)
    return ordered if is_main_process(process_state) else None
