import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_config_kwargs(**overrides):
    """A ViTPose small enough for unit tests (hidden 32, two blocks) at the default 256x192 input."""
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, decoder_channels=16, drop_path_rate=0.0)
    kwargs.update(overrides)
    return kwargs
