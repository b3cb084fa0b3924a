"""Window attention for ViTPose (paper section 3.3, Table 4): windows, shifted windows, pooling windows.

High-resolution (1/8) feature maps make full attention costly, so a layer may attend within windows instead:

- `window`: the token grid is cut into (height, width) windows; each token attends to the tokens of its window.
- `shift_window`: the windows move by half a window (Swin): the grid is rolled cyclically and partitioned, and a mask
  keeps each token to the tokens that are its neighbours on the real map, so nothing attends across the wrap-around
  seam. A single `attention_type="shift_window"` alternates unshifted (even) and shifted (odd) layers.
- `pool_window`: every window's keys and values are average-pooled to one token; all pooled tokens are extra keys and
  values for every window, which gives each window a coarse view of the whole map. A window also sees its own pooled
  token: the paper feeds the pooled features to each window without exception, and keeping the key set identical
  for every window means the common case needs no mask (the fastest kernels). Pooled tokens always summarise the
  regular, unshifted windows, so in a shifted layer they still describe contiguous patches of the map.
- `shift_pool_window`: both.

A grid that the window does not divide is padded at the bottom and right with zero tokens; padded keys are masked out
and padded queries dropped, so the result is that of attention on the real tokens only. A window larger than the
grid is clamped to it (a window covering the whole map is full attention). Extra tokens appended after the grid
(knowledge tokens) are extra keys and values for every window and attend to everything themselves.

Nothing here has parameters: it reuses a layer's `VitPoseAttention` (its fused qkv, kernel dispatch and output
projection), so any checkpoint runs with any attention type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class WindowLayout:
    """Where the tokens of a (rows, cols) grid sit in the windows of one attention layer."""

    grid: tuple[int, int]
    window: tuple[int, int]
    shift: tuple[int, int]
    pool: bool

    @classmethod
    def create(
        cls, grid: tuple[int, int], window_size: tuple[int, int] | list[int], shift: bool = False, pool: bool = False
    ) -> "WindowLayout":
        """Clamp the window to the grid and take half a window as the shift (none along a side the window covers)."""
        if len(window_size) != 2 or any(int(side) <= 0 for side in window_size):
            raise ValueError(f"window_size must be (height, width) with positive sides in tokens, got {window_size}.")
        if len(grid) != 2 or min(grid) <= 0:
            raise ValueError(f"grid must be (rows, cols) of tokens, got {grid}.")
        window = tuple(min(int(side), int(size)) for side, size in zip(window_size, grid))
        shifts = tuple(side // 2 if shift and side < size else 0 for side, size in zip(window, grid))
        return cls(tuple(int(size) for size in grid), window, shifts, bool(pool))

    @property
    def padded(self) -> tuple[int, int]:
        """The grid rounded up to whole windows."""
        return tuple(-(-size // side) * side for size, side in zip(self.grid, self.window))

    @property
    def num_windows(self) -> int:
        return (self.padded[0] // self.window[0]) * (self.padded[1] // self.window[1])

    @property
    def window_tokens(self) -> int:
        return self.window[0] * self.window[1]

    @property
    def needs_mask(self) -> bool:
        """Shifted windows and padded grids need a mask; plain and pooled windows on a divisible grid do not."""
        return self.padded != self.grid or self.shift != (0, 0)

    def slot_positions(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded-grid (row, col) of every window slot, each (num_windows, window_tokens), windows in raster order.

        Rolling the grid by -shift and cutting it into windows puts padded-grid row `(r + shift) % rows` at rolled row
        `r`; writing that out directly gives the partition as a gather instead of pad + roll + reshape copies.
        """
        (rows, cols), (wh, ww), (sh, sw) = self.padded, self.window, self.shift
        row_of = ((torch.arange(rows, device=device) + sh) % rows).reshape(rows // wh, 1, wh, 1)
        col_of = ((torch.arange(cols, device=device) + sw) % cols).reshape(1, cols // ww, 1, ww)
        shape = (rows // wh, cols // ww, wh, ww)
        return (
            row_of.expand(shape).reshape(self.num_windows, self.window_tokens),
            col_of.expand(shape).reshape(self.num_windows, self.window_tokens),
        )

    def token_index(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(source, valid): the grid token of every slot (`rows * cols`, one past the last, for padding) and a mask."""
        slot_rows, slot_cols = self.slot_positions(device)
        valid = (slot_rows < self.grid[0]) & (slot_cols < self.grid[1])
        source = torch.where(valid, slot_rows * self.grid[1] + slot_cols, self.grid[0] * self.grid[1])
        return source, valid

    def attention_mask(self, num_extra_keys: int, dtype: torch.dtype, device: torch.device | None = None):
        """Additive (num_windows, window_tokens, window_tokens + num_extra_keys) mask, or None when none is needed.

        Slot b is visible from slot a when b is a real token and both lie in the same shifted window of the real,
        non-cyclic map: rows i and i' share one when `(i - shift) // window` agree (columns alike). Tokens that the
        cyclic roll brought together from opposite borders fall in different such windows. Every slot sees itself,
        so no row is empty (padded queries would otherwise give NaN, also in the backward pass). Extra keys (pooled
        windows, knowledge tokens) are visible from everywhere.
        """
        if not self.needs_mask:
            return None
        slot_rows, slot_cols = self.slot_positions(device)
        valid = (slot_rows < self.grid[0]) & (slot_cols < self.grid[1])
        band_rows = torch.div(slot_rows - self.shift[0], self.window[0], rounding_mode="floor")
        band_cols = torch.div(slot_cols - self.shift[1], self.window[1], rounding_mode="floor")
        visible = (band_rows[:, :, None] == band_rows[:, None, :]) & (band_cols[:, :, None] == band_cols[:, None, :])
        visible &= valid[:, None, :]
        visible |= torch.eye(self.window_tokens, dtype=torch.bool, device=device)
        mask = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, torch.finfo(dtype).min)
        return F.pad(mask, (0, num_extra_keys))


def partition_windows(tokens: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """(batch, rows * cols, channels) grid tokens -> (batch, num_windows, window_tokens, channels), zero padded."""
    batch, length, channels = tokens.shape
    if length != layout.grid[0] * layout.grid[1]:
        raise ValueError(f"{length} tokens do not fill a {layout.grid[0]}x{layout.grid[1]} grid.")
    source, _ = layout.token_index(tokens.device)
    if layout.padded != layout.grid:
        tokens = F.pad(tokens, (0, 0, 0, 1))  # the zero token that padding slots read
    windows = tokens.index_select(1, source.flatten())
    return windows.reshape(batch, layout.num_windows, layout.window_tokens, channels)


def merge_windows(windows: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """Inverse of `partition_windows`: (batch, num_windows, window_tokens, channels) -> (batch, rows * cols, channels).

    Every real token sits in exactly one slot, so gathering those slots in token order undoes the partition (and the
    roll); padding slots are dropped.
    """
    batch, channels = windows.shape[0], windows.shape[-1]
    source, valid = layout.token_index(windows.device)
    slots = torch.arange(source.numel(), device=windows.device)[valid.flatten()]
    order = torch.empty(layout.grid[0] * layout.grid[1], dtype=torch.long, device=windows.device)
    order[source.flatten()[valid.flatten()]] = slots
    return windows.reshape(batch, -1, channels).index_select(1, order)


def pool_windows(tokens: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """Mean of the real tokens of each regular (unshifted) window: (batch, rows * cols, C) -> (batch, windows, C)."""
    batch, _, channels = tokens.shape
    (rows, cols), (prows, pcols), (wh, ww) = layout.grid, layout.padded, layout.window
    grid = tokens.reshape(batch, rows, cols, channels)
    if (prows, pcols) != (rows, cols):
        grid = F.pad(grid, (0, 0, 0, pcols - cols, 0, prows - rows))
    sums = grid.reshape(batch, prows // wh, wh, pcols // ww, ww, channels).sum(dim=(2, 4))
    starts_r = torch.arange(0, prows, wh, device=tokens.device)
    starts_c = torch.arange(0, pcols, ww, device=tokens.device)
    counts = (rows - starts_r).clamp(max=wh)[:, None] * (cols - starts_c).clamp(max=ww)[None, :]
    return (sums / counts[None, :, :, None].to(sums.dtype)).reshape(batch, -1, channels)


def _key_to_token_map(layout: WindowLayout, num_extra: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(num_windows, keys, tokens) weights expressing each window's keys through the layer's input tokens.

    A slot is its token (nothing for padding), a pooled key the mean of its window's real tokens, an extra key
    itself; with it, per-window attention probabilities become one (tokens x tokens) map per head.
    """
    num_grid = layout.grid[0] * layout.grid[1]
    source, _ = layout.token_index(device)
    parts = [F.one_hot(source, num_grid + 1)[..., :num_grid].to(dtype)]
    if layout.pool:
        regular, _ = WindowLayout(layout.grid, layout.window, (0, 0), True).token_index(device)
        members = F.one_hot(regular, num_grid + 1)[..., :num_grid].to(dtype).sum(1)  # (windows, tokens)
        pooled = members / members.sum(-1, keepdim=True)
        parts.append(pooled.expand(layout.num_windows, -1, -1))
    parts = [F.pad(part, (0, num_extra)) for part in parts]
    if num_extra:
        extra = F.pad(torch.eye(num_extra, dtype=dtype, device=device), (num_grid, 0))
        parts.append(extra.expand(layout.num_windows, -1, -1))
    keys = torch.cat(parts, dim=1)
    return keys


def window_self_attention(
    attention: nn.Module, hidden_states: torch.Tensor, grid: tuple[int, int], attention_type: str,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Self-attention of a `VitPoseAttention` restricted to windows of `attention.config.window_size`.

    Args:
        attention: the layer's attention module; its `qkv`, `attend_heads` and `proj` do the work.
        hidden_states: (batch, rows * cols + extra, hidden) normalised tokens, grid tokens first in raster order.
        grid: (rows, cols) of the token grid.
        attention_type: "window", "shift_window", "pool_window" or "shift_pool_window".
        output_attentions: also return (batch, heads, tokens, tokens) attention probabilities, with each window's
            probabilities placed at its tokens and a pooled key's probability spread evenly over its window, so that
            `probabilities @ values` is exactly what the layer computed.
    """
    if attention_type not in ("window", "shift_window", "pool_window", "shift_pool_window"):
        raise ValueError(f"attention_type {attention_type!r} is not a window attention type.")
    layout = WindowLayout.create(grid, attention.config.window_size, "shift" in attention_type, "pool" in attention_type)
    batch, length, width = hidden_states.shape
    num_grid = grid[0] * grid[1]
    num_extra = length - num_grid
    if num_extra < 0:
        raise ValueError(f"{length} tokens cannot hold a {grid[0]}x{grid[1]} grid.")
    heads, head_dim = attention.num_heads, attention.head_dim
    windows, tokens = layout.num_windows, layout.window_tokens

    qkv = attention.qkv(hidden_states)  # (B, L, 3C)
    grid_qkv, extra_qkv = qkv[:, :num_grid], qkv[:, num_grid:]
    # (3, B * windows, heads, window_tokens, head_dim)
    windowed = partition_windows(grid_qkv, layout).reshape(batch * windows, tokens, 3, heads, head_dim)
    query, key, value = windowed.permute(2, 0, 3, 1, 4).unbind(0)

    shared = []  # keys and values every window sees: pooled windows, then extra tokens
    if layout.pool:
        shared.append(pool_windows(grid_qkv[..., width:], layout))
    if num_extra:
        shared.append(extra_qkv[..., width:])
    if shared:
        shared = torch.cat(shared, dim=1)  # (B, M, 2C)
        count = shared.shape[1]
        shared = shared[:, None].expand(batch, windows, count, 2 * width).reshape(batch * windows, count, 2, heads, head_dim)
        shared_key, shared_value = shared.permute(2, 0, 3, 1, 4).unbind(0)
        key = torch.cat([key, shared_key], dim=2)
        value = torch.cat([value, shared_value], dim=2)
    mask = layout.attention_mask(key.shape[2] - tokens, query.dtype, query.device)
    if mask is not None:
        mask = mask[None].expand(batch, -1, -1, -1).reshape(batch * windows, 1, tokens, key.shape[2])

    output, weights = attention.attend_heads(query, key, value, mask, output_attentions)
    output = merge_windows(output.reshape(batch, windows, tokens, width), layout)

    extra_weights = None
    if num_extra:  # extra tokens attend to every token
        full = qkv.reshape(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        extra_output, extra_weights = attention.attend_heads(
            full[0][:, :, num_grid:], full[1], full[2], None, output_attentions
        )
        output = torch.cat([output, extra_output.reshape(batch, num_extra, width)], dim=1)
    output = attention.proj(output)

    if not output_attentions:
        return output, None
    key_map = _key_to_token_map(layout, num_extra, weights.dtype, weights.device)
    per_slot = torch.einsum("bwhtk,wkn->bhwtn", weights.reshape(batch, windows, heads, tokens, -1), key_map)
    probabilities = merge_windows(
        per_slot.reshape(batch * heads, windows, tokens, length), layout
    ).reshape(batch, heads, num_grid, length)
    if extra_weights is not None:
        probabilities = torch.cat([probabilities, extra_weights], dim=2)
    return output, probabilities


__all__ = ["WindowLayout", "partition_windows", "merge_windows", "pool_windows", "window_self_attention"]
