"""Multi-dataset training: a seeded, resumable sampler that mixes datasets with given probabilities.

The original ViTPose multi-task recipe concatenates its datasets, so each is sampled in proportion to its size
(AI Challenger dominates); `MixingSampler` does that by default and takes explicit probabilities otherwise. An
epoch of `num_samples` draws contains each dataset exactly `round(p * num_samples)` times (largest remainders) in a
shuffled order; inside a dataset, samples are drawn without replacement, reshuffled each time a dataset is
exhausted. Everything is a function of `(seed, epoch)`, so the position inside an epoch is all a restart needs.

    mixed = MixedDataset([coco, aic, mpii])                 # each row keeps its `dataset_index`
    sampler = MixingSampler(mixed.sizes, probabilities=[0.5, 0.3, 0.2], seed=0)
    loader = DataLoader(mixed, batch_size=64, sampler=sampler, collate_fn=collate_keypoints)

With accelerate, `accelerator.prepare(loader)` shards the batches across processes (every process runs the same
sampler, so they agree on the order); without it, pass `rank` and `world_size` to shard the samples directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def mixing_counts(probabilities: Sequence[float], num_samples: int) -> np.ndarray:
    """How many of `num_samples` draws each dataset gets: `p * n` rounded by largest remainder (sums to n)."""
    p = np.asarray(probabilities, dtype=np.float64)
    exact = p / p.sum() * num_samples
    counts = np.floor(exact).astype(np.int64)
    remainder = num_samples - int(counts.sum())
    if remainder > 0:
        counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
    return counts


class MixingSampler(Sampler):
    """Yields `(dataset_index, sample_index)` pairs mixing several datasets.

    Args:
        sizes: number of samples of each dataset.
        probabilities: share of each dataset in the draws (normalised); None: proportional to `sizes`.
        num_samples: draws per epoch (all processes together); default `sum(sizes)`.
        seed: fixes the order of every epoch (with `set_epoch`).
        rank, world_size: shard the draws directly (process `rank` takes every `world_size`-th); leave the default
            when `accelerate` shards the batches.
        start_index: position (in this process's draws) the next iteration starts from, to resume an epoch.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        probabilities: Sequence[float] | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_index: int = 0,
    ) -> None:
        self.sizes = [int(s) for s in sizes]
        if not self.sizes or min(self.sizes) < 0:
            raise ValueError(f"sizes must be a non-empty list of dataset sizes >= 0, got {list(sizes)}.")
        if probabilities is None:
            probabilities = self.sizes
        probabilities = [float(p) for p in probabilities]
        if len(probabilities) != len(self.sizes):
            raise ValueError(f"Got {len(probabilities)} probabilities for {len(self.sizes)} datasets.")
        if min(probabilities) < 0 or sum(probabilities) <= 0:
            raise ValueError(f"probabilities must be >= 0 with a positive sum, got {probabilities}.")
        for index, (p, size) in enumerate(zip(probabilities, self.sizes)):
            if p > 0 and size == 0:
                raise ValueError(f"Dataset {index} is empty but has sampling probability {p}.")
        total = sum(probabilities)
        self.probabilities = [p / total for p in probabilities]
        self.num_samples = int(num_samples) if num_samples is not None else sum(self.sizes)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got rank {rank}, world_size {world_size}.")
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.start_index = int(start_index)

    def __len__(self) -> int:
        """Draws of this process per epoch (the global draws padded to a multiple of `world_size`)."""
        return math.ceil(self.num_samples / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self, position: int | None = None) -> dict[str, int]:
        """Where the sampler stands: pass `position` = draws already consumed in this epoch (by this process)."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.start_index if position is None else int(position)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(f"Sampler state was saved with seed {state['seed']}, this sampler has seed {self.seed}.")
        self.epoch = int(state["epoch"])
        self.start_index = int(state["position"])

    def epoch_order(self, epoch: int | None = None) -> np.ndarray:
        """All draws of an epoch, every process together: an (num_samples, 2) array of (dataset, sample) indices."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        counts = mixing_counts(self.probabilities, self.num_samples)
        which = rng.permutation(np.repeat(np.arange(len(self.sizes)), counts))
        order = np.empty((self.num_samples, 2), dtype=np.int64)
        order[:, 0] = which
        for dataset, (count, size) in enumerate(zip(counts, self.sizes)):
            if count == 0:
                continue
            # Without replacement inside a dataset; a fresh permutation each time it runs out.
            passes = [rng.permutation(size) for _ in range(math.ceil(count / size))]
            order[which == dataset, 1] = np.concatenate(passes)[:count]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.epoch_order()
        if self.world_size > 1:
            padded = len(self) * self.world_size
            order = np.concatenate([order, order[: padded - len(order)]])[self.rank :: self.world_size]
        start, self.start_index = self.start_index, 0  # a resumed epoch starts there once; the next from 0
        for dataset, sample in order[start:].tolist():
            yield dataset, sample


class MixedDataset(Dataset):
    """Several datasets behind one index: `mixed[(d, i)]` is `datasets[d][i]`, with `dataset_index` set to `d`
    unless the sample already carries one; `mixed[j]` indexes the concatenation (like `ConcatDataset`)."""

    def __init__(self, datasets: Sequence[Any], dataset_indices: Sequence[int] | None = None) -> None:
        self.datasets = list(datasets)
        self.dataset_indices = list(dataset_indices) if dataset_indices is not None else list(range(len(self.datasets)))
        if len(self.dataset_indices) != len(self.datasets):
            raise ValueError(f"Got {len(self.dataset_indices)} dataset_indices for {len(self.datasets)} datasets.")
        self.sizes = [len(d) for d in self.datasets]
        self.offsets = np.cumsum([0] + self.sizes)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if isinstance(key, tuple):
            dataset, index = int(key[0]), int(key[1])
        else:
            key = int(key)
            if not 0 <= key < len(self):
                raise IndexError(f"Index {key} out of range for {len(self)} samples.")
            dataset = int(np.searchsorted(self.offsets, key, side="right") - 1)
            index = key - int(self.offsets[dataset])
        if not 0 <= dataset < len(self.datasets):
            raise IndexError(f"Dataset index {dataset} out of range for {len(self.datasets)} datasets.")
        sample = self.datasets[dataset][index]
        if isinstance(sample, dict) and "dataset_index" not in sample:
            sample = {**sample, "dataset_index": self.dataset_indices[dataset]}
        return sample


# Per-keypoint outputs whose K differs between datasets: padded to the largest K of the batch.
_PADDED_KEYS = {"labels": 0.0, "target_weight": 0.0, "keypoints": 0.0}


def collate_keypoints(samples: list[dict]) -> dict[str, Any]:
    """Batch transformed samples from datasets with different keypoint counts.

    `labels` (K, h, w), `target_weight` (K,) and `keypoints` (K, 3) are zero-padded to the largest K (weight 0 means
    the padding never reaches the loss); tensors and numbers are stacked; other values stay lists.
    """
    if not samples:
        return {}
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in _PADDED_KEYS and isinstance(values[0], torch.Tensor):
            k_max = max(v.shape[0] for v in values)
            padded = []
            for v in values:
                pad = v.new_full((k_max - v.shape[0], *v.shape[1:]), _PADDED_KEYS[key])
                padded.append(torch.cat([v, pad]))
            batch[key] = torch.stack(padded)
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (bool, int, float)):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
