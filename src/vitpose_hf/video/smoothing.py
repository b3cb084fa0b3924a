"""Temporal smoothing of keypoints with the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012).

A low-pass filter whose cutoff rises with speed: a still joint is smoothed strongly (jitter removed), a fast one
hardly at all (little lag). Per value and frame, with the time step dt:

    alpha(cutoff) = 1 / (1 + 1 / (2 pi cutoff dt))
    speed   = alpha(d_cutoff) * (x - x_prev_filtered) / dt + (1 - alpha(d_cutoff)) * speed_prev
    cutoff  = min_cutoff + beta * |speed|
    x_filtered = alpha(cutoff) * x + (1 - alpha(cutoff)) * x_prev_filtered

Lower `min_cutoff` removes more jitter at rest; higher `beta` lets fast motion through with less lag.
"""

from __future__ import annotations

import math

import numpy as np


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """The exponential smoothing factor of a first-order low-pass filter with `cutoff` Hz over `dt` seconds."""
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter of an array of values (any shape), each filtered independently, fed one sample at a time."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"min_cutoff and d_cutoff must be positive and beta >= 0, got {min_cutoff}, {d_cutoff}, "
                             f"{beta}.")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.time: float | None = None

    def __call__(self, value: np.ndarray, time: float) -> np.ndarray:
        """The filtered `value` at `time` seconds; the first sample passes through unchanged."""
        value = np.asarray(value, dtype=np.float64)
        if self.value is None or self.time is None:
            self.value, self.speed, self.time = value.copy(), np.zeros_like(value), float(time)
            return value.copy()
        if value.shape != self.value.shape:
            raise ValueError(f"The filter holds values of shape {self.value.shape}, got {value.shape}.")
        dt = float(time) - self.time
        if dt <= 0:
            raise ValueError(f"Samples must come in increasing time: got t={time} after t={self.time}.")
        speed = (value - self.value) / dt
        a_d = smoothing_factor(self.d_cutoff, dt)
        self.speed = a_d * speed + (1 - a_d) * self.speed
        a = smoothing_factor(self.min_cutoff + self.beta * np.abs(self.speed), dt)
        self.value = a * value + (1 - a) * self.value
        self.time = float(time)
        return self.value.copy()


class KeypointSmoother:
    """One One-Euro filter per track: `smooth(track_id, keypoints, time)`; filters of ended tracks are dropped with
    `keep_only(active_ids)`. Defaults suit pixel coordinates (beta per pixel/second)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.settings = {"min_cutoff": min_cutoff, "beta": beta, "d_cutoff": d_cutoff}
        OneEuroFilter(**self.settings)  # check the settings now
        self.filters: dict[int, OneEuroFilter] = {}

    def smooth(self, track_id: int, keypoints: np.ndarray, time: float) -> np.ndarray:
        if track_id not in self.filters:
            self.filters[track_id] = OneEuroFilter(**self.settings)
        return self.filters[track_id](keypoints, time)

    def keep_only(self, track_ids: list[int]) -> None:
        self.filters = {i: f for i, f in self.filters.items() if i in set(track_ids)}


__all__ = ["KeypointSmoother", "OneEuroFilter", "smoothing_factor"]
