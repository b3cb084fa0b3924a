"""Window, shifted-window and pooling-window attention (paper section 3.3, Table 4).

The reference below is written the way Swin and the paper describe it, with explicit loops: pad the grid with zero
tokens, roll it by half a window, label the rolled map with Swin's three slices per side, and attend window by window
with padded keys and other regions masked out; pooling windows average each regular window's real keys and values
and append all of them to every window.
"""

import math

import pytest
import torch
from support.models import randomize, tiny_config_kwargs

from vitpose_hf import VitPoseConfig, VitPoseModel
from vitpose_hf.modeling_vitpose import VitPoseAttention
from vitpose_hf.window_attention import (
    WindowLayout,
    merge_windows,
    partition_windows,
    window_self_attention,
)

WINDOW_TYPES = ["window", "shift_window", "pool_window", "shift_pool_window"]




def make_attention(window_size, implementation: str = "eager", hidden: int = 16, heads: int = 2) -> VitPoseAttention:
    config = VitPoseConfig(**tiny_config_kwargs(hidden_size=hidden, num_attention_heads=heads, window_size=window_size))
    config._attn_implementation = implementation
    return randomize(VitPoseAttention(config), std=0.3).eval()


def reference_window_attention(attention, x, grid, window, shift: bool, pool: bool, own_pooled: bool = True):
    """Explicit per-window loops on an explicitly padded and rolled grid (Swin's masking, the paper's pooling)."""
    batch, length, width = x.shape
    heads = attention.num_heads
    dim = width // heads
    rows, cols = grid
    q, k, v = attention.qkv(x).reshape(batch, length, 3, heads, dim).permute(2, 0, 3, 1, 4)  # (B, h, L, d) each
    wh, ww = min(window[0], rows), min(window[1], cols)
    sh = wh // 2 if shift and wh < rows else 0
    sw = ww // 2 if shift and ww < cols else 0
    prows, pcols = math.ceil(rows / wh) * wh, math.ceil(cols / ww) * ww

    def padded(t):
        out = torch.zeros(batch, heads, prows, pcols, dim)
        out[:, :, :rows, :cols] = t[:, :, : rows * cols].reshape(batch, heads, rows, cols, dim)
        return out

    qg, kg, vg = padded(q), padded(k), padded(v)
    real = torch.zeros(prows, pcols, dtype=torch.bool)
    real[:rows, :cols] = True

    pooled_k, pooled_v, pooled_of = [], [], []
    for a in range(prows // wh):
        for b in range(pcols // ww):
            rs, cs = slice(a * wh, (a + 1) * wh), slice(b * ww, (b + 1) * ww)
            sel = real[rs, cs]
            pooled_k.append(kg[:, :, rs, cs][:, :, sel].mean(2))
            pooled_v.append(vg[:, :, rs, cs][:, :, sel].mean(2))
            pooled_of.append((a, b))

    qg, kg, vg = (torch.roll(t, (-sh, -sw), dims=(2, 3)) for t in (qg, kg, vg))
    real = torch.roll(real, (-sh, -sw), dims=(0, 1))
    region = torch.zeros(prows, pcols, dtype=torch.long)
    h_slices = (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)) if sh else (slice(None),)
    w_slices = (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)) if sw else (slice(None),)
    label = 0
    for hs in h_slices:
        for ws in w_slices:
            region[hs, ws] = label
            label += 1

    out = torch.zeros(batch, heads, prows, pcols, dim)
    tokens = wh * ww
    for a in range(prows // wh):
        for b in range(pcols // ww):
            rs, cs = slice(a * wh, (a + 1) * wh), slice(b * ww, (b + 1) * ww)
            qw = qg[:, :, rs, cs].reshape(batch, heads, tokens, dim)
            keys = [kg[:, :, rs, cs].reshape(batch, heads, tokens, dim)]
            values = [vg[:, :, rs, cs].reshape(batch, heads, tokens, dim)]
            reg, key_real = region[rs, cs].reshape(tokens), real[rs, cs].reshape(tokens)
            allowed = [(reg[:, None] == reg[None, :]) & key_real[None, :]]
            if pool:
                for (pa, pb), pk, pv in zip(pooled_of, pooled_k, pooled_v):
                    if not own_pooled and (pa, pb) == (a, b):
                        continue
                    keys.append(pk[:, :, None])
                    values.append(pv[:, :, None])
                    allowed.append(torch.ones(tokens, 1, dtype=torch.bool))
            if length > rows * cols:
                keys.append(k[:, :, rows * cols :])
                values.append(v[:, :, rows * cols :])
                allowed.append(torch.ones(tokens, length - rows * cols, dtype=torch.bool))
            scores = qw @ torch.cat(keys, 2).transpose(-1, -2) * dim**-0.5
            scores = scores.masked_fill(~torch.cat(allowed, 1), float("-inf"))
            out[:, :, rs, cs] = (scores.softmax(-1) @ torch.cat(values, 2)).reshape(batch, heads, wh, ww, dim)
    out = torch.roll(out, (sh, sw), dims=(2, 3))[:, :, :rows, :cols].reshape(batch, heads, rows * cols, dim)
    if length > rows * cols:  # extra tokens attend to everything
        extra = (q[:, :, rows * cols :] @ k.transpose(-1, -2) * dim**-0.5).softmax(-1) @ v
        out = torch.cat([out, extra], dim=2)
    return attention.proj(out.transpose(1, 2).reshape(batch, length, width))


@pytest.mark.parametrize("attention_type", WINDOW_TYPES)
@pytest.mark.parametrize("grid,window", [((8, 6), (4, 3)), ((8, 8), (4, 4)), ((7, 5), (4, 3)), ((6, 9), (4, 4))])
@pytest.mark.parametrize("extra", [0, 2])
def test_matches_explicit_per_window_loops(attention_type, grid, window, extra):
    attention = make_attention(window)
    x = torch.randn(2, grid[0] * grid[1] + extra, 16)
    with torch.no_grad():
        ours, _ = window_self_attention(attention, x, grid, attention_type)
        expected = reference_window_attention(attention, x, grid, window, "shift" in attention_type, "pool" in attention_type)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention_type", WINDOW_TYPES)
def test_window_size_that_does_not_divide_the_grid_is_padded(attention_type):
    """A 7x5 grid in 4x3 windows: padded to 8x6 with zero tokens whose keys are masked, then cropped."""
    grid, window = (7, 5), (4, 3)
    layout = WindowLayout.create(grid, window, "shift" in attention_type, "pool" in attention_type)
    assert layout.padded == (8, 6) and layout.num_windows == 4 and layout.needs_mask
    attention = make_attention(window, implementation="sdpa")
    x = torch.randn(2, 35, 16)
    with torch.no_grad():
        ours, _ = window_self_attention(attention, x, grid, attention_type)
        expected = reference_window_attention(attention, x, grid, window, "shift" in attention_type, "pool" in attention_type)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    # Padding is invisible: the same tokens give the same result however far the grid is from a multiple.
    tokens = torch.randn(2, 35, 4)
    torch.testing.assert_close(merge_windows(partition_windows(tokens, layout), layout), tokens)


@pytest.mark.parametrize("extra", [0, 2])
@pytest.mark.parametrize("window", [(16, 12), (40, 40)])
@pytest.mark.parametrize("attention_type", ["window", "shift_window"])
def test_window_covering_the_whole_map_equals_full_attention(attention_type, window, extra):
    kwargs = tiny_config_kwargs(num_knowledge_tokens=extra)
    full = randomize(VitPoseModel(VitPoseConfig(**kwargs)), std=0.3).eval()
    windowed = VitPoseModel(VitPoseConfig(**kwargs, attention_type=attention_type, window_size=window)).eval()
    windowed.load_state_dict(full.state_dict())  # no new parameters: the same weights fit
    pixels = torch.randn(2, 3, 256, 192)  # a 16x12 token grid
    with torch.no_grad():
        torch.testing.assert_close(windowed(pixels).heatmaps, full(pixels).heatmaps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("attention_type", ["shift_window", "shift_pool_window"])
@pytest.mark.parametrize("grid", [(8, 8), (7, 7)])
def test_shifted_windows_never_attend_across_the_wrap_around(attention_type, grid):
    """Rolling by 2 puts rows 0-1 in the bottom windows beside rows 6-7 (or 6 and padding); they must stay apart."""
    rows, cols = grid
    attention = make_attention((4, 4))
    x = torch.randn(1, rows * cols, 16)
    edited = x.clone().reshape(1, rows, cols, 16)
    edited[:, 0] += 3.0 * torch.randn(cols, 16)  # the top row
    edited[:, :, 0] += 3.0 * torch.randn(rows, 16)  # and the left column
    edited = edited.reshape(1, rows * cols, 16)
    with torch.no_grad():
        before, probabilities = window_self_attention(attention, x, grid, attention_type, output_attentions=True)
        after, _ = window_self_attention(attention, edited, grid, attention_type)
    changed = (after - before).abs().amax(-1).reshape(rows, cols) > 1e-6
    if "pool" in attention_type:
        assert changed.all()  # every window sees the edited windows' pooled tokens
    else:
        # Shifted windows start at rows/cols -2, 2, 6: the edit reaches rows 0-1 and columns 0-1 only.
        assert changed[:2].all() and changed[:, :2].all()
        assert not changed[2:, 2:].any()
    # Token to token, nothing crosses the seam: top rows and bottom rows, left and right columns never meet.
    token_probs = probabilities[0].reshape(-1, rows, cols, rows, cols)
    if "pool" not in attention_type:
        assert token_probs[:, :2, :, 2:, :].abs().max() == 0 and token_probs[:, 2:, :, :2, :].abs().max() == 0
        assert token_probs[:, :, :2, :, 2:].abs().max() == 0 and token_probs[:, :, 2:, :, :2].abs().max() == 0
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(probabilities.shape[:-1]))


def test_pooling_windows_see_every_windows_pooled_token():
    grid, window = (8, 8), (4, 4)  # four windows
    attention = make_attention(window)
    x = torch.randn(1, 64, 16)
    mean_preserving, mean_changing = x.clone(), x.clone()
    delta = torch.randn(16)
    mean_preserving[0, 0] += delta  # tokens (0, 0) and (1, 1), both in the top-left window
    mean_preserving[0, 9] -= delta
    mean_changing[0, 0] += delta
    with torch.no_grad():
        before, probabilities = window_self_attention(attention, x, grid, "pool_window", output_attentions=True)
        same_mean, _ = window_self_attention(attention, mean_preserving, grid, "pool_window")
        new_mean, _ = window_self_attention(attention, mean_changing, grid, "pool_window")
        plain_before, _ = window_self_attention(attention, x, grid, "window")
        plain_after, _ = window_self_attention(attention, mean_changing, grid, "window")
    window_of = torch.arange(64).reshape(8, 8)
    window_of = ((window_of // 8 // 4) * 2 + (window_of % 8) // 4).flatten()
    others = window_of != 0
    # Other windows see the top-left window only through its pooled token: a mean-preserving edit is invisible to them.
    torch.testing.assert_close(same_mean[0, others], before[0, others], rtol=1e-5, atol=1e-5)
    assert (same_mean[0, ~others] - before[0, ~others]).abs().max() > 1e-3
    # A change of the mean reaches every window, which plain windows never allow.
    assert ((new_mean - before)[0].abs().amax(-1) > 1e-6).all()
    torch.testing.assert_close(plain_after[0, others], plain_before[0, others])
    # Each query spends attention on every window, and its own window's tokens take their pooled share too.
    per_window = torch.zeros(2, 64, 4).index_add_(2, window_of, probabilities[0])
    assert (per_window > 0).all()
    # The window also attends to its own pooled token: dropping it gives a different result.
    with torch.no_grad():
        without_own = reference_window_attention(attention, x, grid, window, False, True, own_pooled=False)
        with_own = reference_window_attention(attention, x, grid, window, False, True)
    torch.testing.assert_close(before, with_own, rtol=1e-5, atol=1e-5)
    assert (before - without_own).abs().max() > 1e-3


@pytest.mark.parametrize("attention_type", WINDOW_TYPES)
def test_attention_probabilities_reproduce_the_output(attention_type):
    grid = (7, 5)
    attention = make_attention((4, 3))
    x = torch.randn(2, 35 + 1, 16)
    with torch.no_grad():
        output, probabilities = window_self_attention(attention, x, grid, attention_type, output_attentions=True)
        values = attention.qkv(x).reshape(2, 36, 3, 2, 8)[:, :, 2].transpose(1, 2)  # (B, heads, L, d)
        rebuilt = attention.proj((probabilities @ values).transpose(1, 2).reshape(2, 36, 16))
    assert probabilities.shape == (2, 2, 36, 36)
    torch.testing.assert_close(rebuilt, output, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention_type", WINDOW_TYPES)
def test_sdpa_and_eager_agree(attention_type):
    eager = make_attention((4, 3), "eager")
    sdpa = make_attention((4, 3), "sdpa")
    sdpa.load_state_dict(eager.state_dict())
    x = torch.randn(2, 35, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            window_self_attention(sdpa, x, (7, 5), attention_type)[0],
            window_self_attention(eager, x, (7, 5), attention_type)[0], rtol=1e-5, atol=1e-5,
        )


@pytest.mark.parametrize("decoder", ["classic", "simple"])
@pytest.mark.parametrize("attention_type", WINDOW_TYPES)
def test_stride8_window_models_give_quarter_resolution_heatmaps_and_gradients(decoder, attention_type):
    config = VitPoseConfig(**tiny_config_kwargs(
        decoder=decoder, patch_stride=8, attention_type=attention_type, window_size=(5, 7), full_attention_interval=0,
    ))
    model = randomize(VitPoseModel(config), std=0.3).train()
    assert config.token_grid() == (32, 24)
    pixels = torch.randn(2, 3, 256, 192)
    outputs = model(pixels, labels=torch.rand(2, 17, 64, 48))
    assert outputs.heatmaps.shape == (2, 17, 64, 48)
    outputs.loss.backward()  # padded windows and shifted masks: no NaN leaks into the gradients
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_no_new_parameters_and_layer_types_from_the_config():
    kwargs = tiny_config_kwargs(num_hidden_layers=8)
    full = VitPoseModel(VitPoseConfig(**kwargs))
    mixed_config = VitPoseConfig(**kwargs, attention_type="shift_pool_window", full_attention_interval=4)
    mixed = VitPoseModel(mixed_config)
    assert {k: v.shape for k, v in full.state_dict().items()} == {k: v.shape for k, v in mixed.state_dict().items()}
    # A single shifted type alternates as in Swin; every 4th layer is full attention (ViTDet's mix).
    assert [layer.attention_type for layer in mixed.vit.layers] == [
        "pool_window", "shift_pool_window", "pool_window", "full",
        "pool_window", "shift_pool_window", "pool_window", "full",
    ]
    explicit = VitPoseConfig(**kwargs, attention_type=["shift_window"] * 8)
    assert explicit.layer_attention_types == ["shift_window"] * 8


def test_bad_window_size_is_refused():
    with pytest.raises(ValueError, match="window_size"):
        VitPoseConfig(**tiny_config_kwargs(window_size=(0, 4), attention_type="window"))
    with pytest.raises(ValueError, match="window_size"):
        WindowLayout.create((8, 8), (4, -1))
    with pytest.raises(ValueError, match="not a window attention type"):
        window_self_attention(make_attention((4, 4)), torch.randn(1, 16, 16), (4, 4), "full")
