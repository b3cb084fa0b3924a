"""Tiny random ViTPose models for fast tests."""

from __future__ import annotations

import torch


def tiny_config_kwargs(**overrides) -> dict:
    """A ViTPose small enough for unit tests (hidden 32, two blocks) at the default 256x192 input."""
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, decoder_channels=16, drop_path_rate=0.0)
    kwargs.update(overrides)
    return kwargs


def randomize(model: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Replace the near-zero initial weights (heads, attention) so that outputs are far from trivial."""
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, std) if param.ndim > 1 else param.uniform_(-0.1, 0.1)
    return model


def tamper_weights(folder, drop=(), extra=()) -> None:
    """Remove weights from, or add stray ones to, a saved folder's model.safetensors (strict-loading tests)."""
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    for key in drop:
        del state[key]
    for key in extra:
        state[key] = torch.zeros(3)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
