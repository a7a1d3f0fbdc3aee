"""Diurnal (and weekly) load shape per region, applied to any arrival process by time warping.

The rate multiplier at UTC time t (seconds since the trace start) is

    m(t) = weekly[local weekday] · (1 + a·cos(2π (h_local − peak_hour) / 24)),
    a = (peak_to_trough − 1) / (peak_to_trough + 1),

with h_local = start_hour_utc + 24·t/day_s + tz_offset_h, so max/min of the daily factor is
peak_to_trough and its daily mean is 1 (weekly factors are normalised to mean 1). `day_s` is
86,400 for real time; a smaller value compresses a day into a short run (the demo plays a day
in 10 minutes so that one run shows the swing; LoadGen's 600 s minimum still holds). Warping maps
a process generated at the mean rate through the inverse of M(t) = ∫ m: a renewal process keeps
its burstiness in "operational time" while its rate follows the profile (for Poisson this is
exactly a non-homogeneous Poisson process with intensity rate·m(t)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtia_cluster.errors import UserError
from mtia_cluster.units import NS_PER_S

SECONDS_PER_DAY = 86_400.0
GRID_PER_DAY = 1440  # m(t) is evaluated per (simulated) minute; M is piecewise linear between


@dataclass(frozen=True)
class DiurnalProfile:
    """Peak:trough ratio, local peak hour, timezone offset and optional weekday weights."""

    peak_to_trough: float = 1.0
    peak_hour_local: float = 20.0
    tz_offset_h: float = 0.0
    start_hour_utc: float = 0.0  # hour of week at t=0 (0 = Monday 00:00 UTC)
    weekly: tuple[float, ...] = (1.0,) * 7  # Monday..Sunday
    day_s: float = SECONDS_PER_DAY  # length of one simulated day in trace seconds

    def __post_init__(self) -> None:
        if not (self.peak_to_trough >= 1 and math.isfinite(self.peak_to_trough)):
            raise UserError(
                "peak_to_trough must be >= 1",
                field="diurnal.peak_to_trough",
                value=self.peak_to_trough,
            )
        if len(self.weekly) != 7 or min(self.weekly) <= 0:
            raise UserError(
                "weekly needs 7 positive weights (Monday..Sunday)",
                field="diurnal.weekly",
                value=list(self.weekly),
            )
        if not (self.day_s > 0 and math.isfinite(self.day_s)):
            raise UserError("day_s must be > 0", field="diurnal.day_s", value=self.day_s)

    @property
    def grid_s(self) -> float:
        """Step of the piecewise-linear M(t): one simulated minute."""
        return self.day_s / GRID_PER_DAY

    def multiplier(self, t_s: np.ndarray) -> np.ndarray:
        """m(t) for times in seconds since the trace start."""
        a = (self.peak_to_trough - 1.0) / (self.peak_to_trough + 1.0)
        local_h = (
            self.start_hour_utc
            + np.asarray(t_s, dtype=np.float64) * 24.0 / self.day_s
            + self.tz_offset_h
        )
        daily = 1.0 + a * np.cos(2 * np.pi * (local_h - self.peak_hour_local) / 24.0)
        week = np.asarray(self.weekly, dtype=np.float64)
        week = week / week.mean()
        day = np.floor(local_h / 24.0).astype(np.int64) % 7
        return daily * week[day]

    def cumulative(self, horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Grid times t (s) and M(t) = ∫₀ᵗ m, with m constant per grid minute."""
        grid = self.grid_s
        steps = math.ceil(horizon_s / grid) + 1
        t = np.arange(steps + 1, dtype=np.float64) * grid
        m = self.multiplier(t[:-1] + grid / 2)
        return t, np.concatenate(([0.0], np.cumsum(m * grid)))

    def warp(self, arrival_ns: np.ndarray, duration_s: float | None = None) -> np.ndarray:
        """Map arrivals generated at the mean rate onto the profile (sorted in, sorted out).

        With `duration_s`, the base arrivals must cover [0, M(duration)) (see
        `operational_duration_s`) and every result lies in [0, duration).
        """
        if len(arrival_ns) == 0:
            return arrival_ns
        u = arrival_ns.astype(np.float64) / NS_PER_S
        floor_m = float(
            (1 - (self.peak_to_trough - 1) / (self.peak_to_trough + 1))
            * min(self.weekly)
            / np.mean(self.weekly)
        )
        horizon = (duration_s if duration_s is not None else float(u[-1]) / floor_m) + self.grid_s
        t, big_m = self.cumulative(horizon)
        out = np.interp(u, big_m, t)
        ns = np.floor(out * NS_PER_S).astype(np.int64)
        return np.maximum.accumulate(ns)

    def operational_duration_s(self, duration_s: float) -> float:
        """M(duration): how long the base process must run to fill `duration_s` of real time."""
        t, big_m = self.cumulative(duration_s)
        return float(np.interp(duration_s, t, big_m))
