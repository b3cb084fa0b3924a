"""Splitting work between processes and putting the pieces back in order (`accelerate launch`, any number of
processes, GPUs or machines).

Every process calls the same code with the same inputs: it keeps its own contiguous share (`process_share`), works
on it, and `gather_in_order` hands every process all results in the input order, so what comes out does not depend
on the number of processes. `process_state` is an `accelerate.PartialState` or `Accelerator` (anything with
`num_processes` and `process_index`); None means one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def num_processes(process_state: Any | None) -> int:
    return 1 if process_state is None else int(process_state.num_processes)


def is_main_process(process_state: Any | None) -> bool:
    return process_state is None or int(process_state.process_index) == 0


def process_share(count: int, process_state: Any | None) -> range:
    """Positions `[start, stop)` of `count` items this process takes: contiguous, sizes differing by at most one
    (as `PartialState.split_between_processes`, without padding)."""
    world = num_processes(process_state)
    if world == 1:
        return range(count)
    rank = int(process_state.process_index)
    return range(rank * count // world, (rank + 1) * count // world)


def gather_in_order(positions: Sequence[int], values: Sequence[T], count: int, process_state: Any | None) -> list[T]:
    """All processes' `values` (each at its `positions` among `count`) on every process, in position order.

    A position given by no process, or by two, is an error: it would mean the processes disagree on the input.
    """
    if len(positions) != len(values):
        raise ValueError(f"Got {len(values)} values for {len(positions)} positions.")
    pairs = list(zip((int(p) for p in positions), values))
    if num_processes(process_state) > 1:
        from accelerate.utils import gather_object

        pairs = gather_object(pairs)
    ordered: list[Any] = [None] * count
    seen = [False] * count
    for position, value in pairs:
        if not 0 <= position < count or seen[position]:
            raise ValueError(f"Position {position} was produced twice or lies outside [0, {count}): the processes "
                             "did not see the same input.")
        seen[position] = True
        ordered[position] = value
    if not all(seen):
        raise ValueError(f"Position {seen.index(False)} of {count} was produced by no process.")
    return ordered
