import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)



@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path_factory, monkeypatch):
    """Default models and detectors resolve against an empty Hub cache: no test sees what this machine downloaded."""
    from huggingface_hub import constants

    cache = str(tmp_path_factory.mktemp("hub_cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    monkeypatch.setenv("HF_HUB_CACHE", cache)
