"""Multi-dataset mixing: shares, determinism, resuming, sharding across processes, batching mixed keypoint sets."""

import numpy as np
import pytest
import torch
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader

from vitpose_hf.data import (
    MixedDataset,
    MixingSampler,
    collate_keypoints,
    mixing_counts,
)


def test_shares_follow_the_probabilities():
    sampler = MixingSampler([1000, 400, 50], probabilities=[0.5, 0.3, 0.2], num_samples=10_000, seed=0)
    draws = np.array(list(sampler))
    assert len(draws) == 10_000
    shares = np.bincount(draws[:, 0], minlength=3) / len(draws)
    assert np.all(np.abs(shares - [0.5, 0.3, 0.2]) < 0.02)
    # The first 1000 draws are already mixed, not one dataset after the other.
    early = np.bincount(draws[:1000, 0], minlength=3) / 1000
    assert np.all(np.abs(early - [0.5, 0.3, 0.2]) < 0.05)
    # Inside a dataset: every sample once before any repeats (dataset 2 is drawn 2000 times for 50 samples).
    for d, size in enumerate([1000, 400, 50]):
        samples = draws[draws[:, 0] == d, 1]
        assert samples.min() >= 0 and samples.max() < size
        first_pass = samples[:size] if len(samples) >= size else samples
        assert len(set(first_pass.tolist())) == len(first_pass)


def test_default_mixing_is_proportional_to_size():
    sampler = MixingSampler([300, 100], seed=1)
    draws = np.array(list(sampler))
    assert len(draws) == 400
    assert np.bincount(draws[:, 0]).tolist() == [300, 100]
    # One epoch at natural proportions visits every sample exactly once, like a shuffled concatenation.
    assert sorted(draws[draws[:, 0] == 0, 1].tolist()) == list(range(300))
    assert mixing_counts([0.5, 0.3, 0.2], 7).tolist() == [4, 2, 1]


def test_same_seed_same_order_and_epochs_differ():
    a = list(MixingSampler([50, 30, 20], probabilities=[0.5, 0.3, 0.2], seed=7))
    b = list(MixingSampler([50, 30, 20], probabilities=[0.5, 0.3, 0.2], seed=7))
    c = list(MixingSampler([50, 30, 20], probabilities=[0.5, 0.3, 0.2], seed=8))
    assert a == b and a != c
    sampler = MixingSampler([50, 30, 20], seed=7)
    sampler.set_epoch(1)
    assert list(sampler) != list(MixingSampler([50, 30, 20], seed=7))


def test_resuming_continues_identically():
    full = MixingSampler([500, 300, 200], probabilities=[0.5, 0.3, 0.2], seed=3)
    full.set_epoch(2)
    order = list(full)
    for n in (0, 1, 377, 999):
        state = full.state_dict(position=n)
        assert state == {"seed": 3, "epoch": 2, "position": n}
        resumed = MixingSampler([500, 300, 200], probabilities=[0.5, 0.3, 0.2], seed=3)
        resumed.load_state_dict(state)
        assert list(resumed) == order[n:]
        assert list(resumed) == order  # the next pass over the same epoch starts from the beginning again
    with pytest.raises(ValueError, match="seed 3"):
        MixingSampler([1], seed=4).load_state_dict(state)
    assert list(MixingSampler([500, 300, 200], [0.5, 0.3, 0.2], seed=3, start_index=10)) != order[10:]  # epoch 0


def test_rank_sharding_partitions_the_draws():
    sizes, probs = [70, 20, 13], [0.6, 0.3, 0.1]
    whole = list(MixingSampler(sizes, probs, seed=5))
    shards = [list(MixingSampler(sizes, probs, seed=5, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 35 for s in shards)  # 103 draws padded to 105
    interleaved = [shards[i % 3][i // 3] for i in range(103)]
    assert interleaved == whole


def _toy_dataset(num: int, k: int, dataset_index: int):
    return [
        {"pixel_values": torch.full((3, 8, 6), float(i)), "labels": torch.ones(k, 4, 3), "target_weight": torch.ones(k),
         "keypoints": torch.ones(k, 3), "dataset_index": dataset_index, "sample_index": i, "image_path": f"{i}.jpg"}
        for i in range(num)
    ]


def test_mixed_dataset_and_padded_batches():
    mixed = MixedDataset([_toy_dataset(10, 17, 0), _toy_dataset(6, 14, 1)])
    assert len(mixed) == 16 and mixed.sizes == [10, 6]
    assert mixed[(1, 2)]["sample_index"] == 2 and mixed[(1, 2)]["dataset_index"] == 1
    assert mixed[12]["dataset_index"] == 1 and mixed[12]["sample_index"] == 2  # ConcatDataset-style index
    with pytest.raises(IndexError):
        mixed[16]
    plain = MixedDataset([[{"x": 1}], [{"x": 2}]], dataset_indices=[0, 5])
    assert plain[(1, 0)] == {"x": 2, "dataset_index": 5}
    sampler = MixingSampler(mixed.sizes, probabilities=[0.5, 0.5], num_samples=12, seed=0)
    loader = DataLoader(mixed, batch_size=4, sampler=sampler, collate_fn=collate_keypoints)
    batches = list(loader)
    assert len(batches) == 3
    order = list(MixingSampler(mixed.sizes, probabilities=[0.5, 0.5], num_samples=12, seed=0))
    for b, batch in enumerate(batches):
        assert batch["labels"].shape == (4, 17, 4, 3) and batch["target_weight"].shape == (4, 17)
        expected = order[4 * b: 4 * b + 4]
        assert batch["dataset_index"].tolist() == [d for d, _ in expected]
        assert batch["sample_index"].tolist() == [i for _, i in expected]
        for row, (d, _) in enumerate(expected):
            k = 17 if d == 0 else 14
            assert batch["target_weight"][row, :k].eq(1).all() and batch["target_weight"][row, k:].eq(0).all()
            assert batch["labels"][row, k:].eq(0).all()
        assert isinstance(batch["image_path"], list)


def test_accelerate_sharding_splits_batches_between_processes():
    """accelerate's DataLoader preparation gives each process its own batches of the same global order."""
    mixed = MixedDataset([_toy_dataset(30, 17, 0), _toy_dataset(20, 14, 1)])
    seen = []
    for process in range(2):
        sampler = MixingSampler(mixed.sizes, seed=9)
        loader = DataLoader(mixed, batch_size=5, sampler=sampler, collate_fn=collate_keypoints)
        prepared = prepare_data_loader(loader, num_processes=2, process_index=process, put_on_device=False)
        seen.append([list(zip(b["dataset_index"].tolist(), b["sample_index"].tolist())) for b in prepared])
    order = list(MixingSampler(mixed.sizes, seed=9))
    batches = [order[i:i + 5] for i in range(0, 50, 5)]
    assert seen[0] == batches[0::2] and seen[1] == batches[1::2]


def test_bad_mixing_arguments():
    with pytest.raises(ValueError, match="2 probabilities for 3 datasets"):
        MixingSampler([1, 2, 3], probabilities=[0.5, 0.5])
    with pytest.raises(ValueError, match="Dataset 1 is empty"):
        MixingSampler([3, 0], probabilities=[0.5, 0.5])
    with pytest.raises(ValueError, match="rank"):
        MixingSampler([3], rank=2, world_size=2)
