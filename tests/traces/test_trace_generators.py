"""Arrival processes and size distributions against their defining statistics.

Tolerances are ~5 standard errors of each estimator (measured over seeds), so a correct
generator fails about never and a wrong one (off by a few %) fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtia_cluster.config.trace_spec import (
    FittedSizes,
    MLPerfSizes,
    SeparateLengths,
    TableLengths,
)
from mtia_cluster.errors import UserError
from mtia_cluster.traces.generators import arrivals as arr
from mtia_cluster.traces.generators.diurnal import DiurnalProfile
from mtia_cluster.traces.generators.sizes import (
    lognormal_params,
    pareto_params,
    sample_lengths,
    sample_sizes,
)
from mtia_cluster.traces.generators.tables import MLPERF_DLRM_V2_QUANTILES

NS = 1e9


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(7,))))


def _cv(t_ns: np.ndarray) -> float:
    gaps = np.diff(t_ns).astype(np.float64)
    return float(gaps.std() / gaps.mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_poisson_cv_is_one_and_rate_within_one_percent(seed: int) -> None:
    n, rate = 200_000, 1000.0
    t = arr.poisson(_rng(seed), rate, n=n)
    assert len(t) == n and np.all(np.diff(t) >= 0)
    # SE of the sample CV of exponential gaps is ~1/sqrt(n) = 0.0022
    assert abs(_cv(t) - 1.0) < 5 / math.sqrt(n)
    assert abs((n - 1) / (t[-1] - t[0]) * NS / rate - 1) < 0.01


def test_poisson_by_duration_fills_the_window() -> None:
    t = arr.poisson(_rng(), 500.0, duration_s=400.0)
    assert t.max() < 400 * NS and t.min() >= 0
    assert abs(len(t) / 400.0 / 500.0 - 1) < 0.01  # 200k arrivals: SE 0.22%


@pytest.mark.parametrize(
    ("family", "cv", "tol"),
    [
        ("gamma", 2.0, 0.04),
        ("gamma", 0.5, 0.005),
        ("weibull", 2.0, 0.08),
        ("weibull", 0.5, 0.005),
    ],
)
def test_renewal_cv_as_asked(family: str, cv: float, tol: float) -> None:
    t = arr.renewal(_rng(3), 1000.0, cv, family, n=200_000)
    assert abs(_cv(t) - cv) < tol
    assert abs(199_999 / (t[-1] - t[0]) * NS / 1000.0 - 1) < 0.05


def test_on_off_mean_rate_and_burstiness() -> None:
    t = arr.on_off(_rng(), 50.0, 1.0, 2.0, 8.0, duration_s=20_000)
    expected = (50 * 2 + 1 * 8) / 10
    assert abs(len(t) / 20_000 / expected - 1) < 0.07
    assert _cv(t) > 2  # a Poisson process at the same rate would give 1


def test_offline_all_at_zero() -> None:
    assert np.array_equal(arr.offline(5), np.zeros(5, np.int64))


def test_diurnal_hourly_rates_follow_profile() -> None:
    rate = 5.0
    prof = DiurnalProfile(peak_to_trough=4.0, peak_hour_local=20, tz_offset_h=-5, start_hour_utc=0)
    dur = 48 * 3600.0
    base = arr.poisson(_rng(11), rate, duration_s=prof.operational_duration_s(dur))
    t = prof.warp(base, dur)
    assert np.all(np.diff(t) >= 0) and t.max() < dur * NS
    hourly = np.bincount((t // (3600 * NS)).astype(np.int64), minlength=48)[:48]
    grid = np.linspace(0, dur, 48 * 3600 + 1)[:-1] + 0.5
    expected = rate * prof.multiplier(grid).reshape(48, 3600).sum(axis=1)
    assert np.all(np.abs(hourly - expected) < 5 * np.sqrt(expected))
    # the busiest hour is the local peak (20:00 at UTC-5 -> 01:00 UTC), the quietest 12 h away
    assert int(np.argmax(hourly[:24])) in (0, 1)
    assert int(np.argmin(hourly[:24])) in (12, 13)
    assert 3.0 < hourly[:24].max() / hourly[:24].min() < 4.5


def test_compressed_day_is_the_real_day_rescaled() -> None:
    """day_s=600 plays the 24-hour profile in 600 s: same multiplier at the same day fraction."""
    real = DiurnalProfile(peak_to_trough=3.0, peak_hour_local=20, tz_offset_h=1, start_hour_utc=6)
    fast = DiurnalProfile(
        peak_to_trough=3.0, peak_hour_local=20, tz_offset_h=1, start_hour_utc=6, day_s=600.0
    )
    frac = np.linspace(0.0, 2.0, 97)
    assert np.allclose(fast.multiplier(frac * 600.0), real.multiplier(frac * 86400.0))
    dur = 1200.0  # two compressed days at 200 requests/s
    base = arr.poisson(_rng(3), 200.0, duration_s=fast.operational_duration_s(dur))
    t = fast.warp(base, dur)
    per_hour = np.bincount((t // (25 * NS)).astype(np.int64), minlength=48)[:48]  # 25 s = 1 h
    expected = 200.0 * 25.0 * fast.multiplier(np.arange(48) * 25.0 + 12.5)
    assert np.all(np.abs(per_hour - expected) < 5 * np.sqrt(expected) + 0.02 * expected)
    assert 2.5 < per_hour[:24].max() / per_hour[:24].min() < 3.5
    with pytest.raises(UserError, match="day_s"):
        DiurnalProfile(day_s=0.0)


def test_diurnal_weekly_shape_and_bursty_base() -> None:
    weekly = (1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5)
    prof = DiurnalProfile(peak_to_trough=1.0, weekly=weekly)
    dur = 7 * 86400.0
    base = arr.renewal(_rng(5), 2.0, 1.5, "gamma", duration_s=prof.operational_duration_s(dur))
    daily = np.bincount((prof.warp(base, dur) // (86400 * NS)).astype(np.int64), minlength=7)
    w = np.asarray(weekly) / np.mean(weekly)
    assert np.allclose(daily / (2.0 * 86400 * w), 1.0, atol=0.05)


def test_diurnal_rejects_bad_profile() -> None:
    with pytest.raises(UserError, match="peak_to_trough"):
        DiurnalProfile(peak_to_trough=0.5)
    with pytest.raises(UserError, match="weekly"):
        DiurnalProfile(weekly=(1.0, 2.0))


def test_mlperf_dlrm_sizes() -> None:
    items = sample_sizes(_rng(), MLPerfSizes(dist="mlperf-dlrm-v2"), 400_000)
    assert set(np.unique(items)) <= set(MLPERF_DLRM_V2_QUANTILES)
    assert abs(items.mean() - 270) < 1.5  # sd of one draw 150 -> SE 0.24


def test_mlperf_constant_matches_shared_file(shared_data) -> None:
    text = (shared_data / "mlperf_dlrm_v2" / "dist_quantile.txt").read_text()
    assert tuple(int(x) for x in text.replace(",", " ").split()) == MLPERF_DLRM_V2_QUANTILES


@pytest.mark.parametrize("dist", ["lognormal", "pareto"])
def test_heavy_tailed_sizes_have_asked_mean_and_p99(dist: str) -> None:
    x = sample_sizes(_rng(2), FittedSizes(dist=dist, mean=270.0, p99=1500.0), 1_000_000)
    assert abs(np.quantile(x, 0.99) / 1500 - 1) < 0.03
    assert abs(x.mean() / 270 - 1) < (0.02 if dist == "lognormal" else 0.08)


def test_size_parameter_solutions() -> None:
    mu, sigma = lognormal_params(270, 1500)
    assert math.isclose(math.exp(mu + sigma**2 / 2), 270, rel_tol=1e-9)
    assert math.isclose(math.exp(mu + 2.3263478740408408 * sigma), 1500, rel_tol=1e-9)
    xm, alpha = pareto_params(270, 1500)
    assert math.isclose(alpha * xm / (alpha - 1), 270, rel_tol=1e-6)
    assert math.isclose(xm * 100 ** (1 / alpha), 1500, rel_tol=1e-6)
    with pytest.raises(UserError):
        lognormal_params(270, 100)


def test_caps_apply() -> None:
    spec = FittedSizes(dist="lognormal", mean=1000, p99=8000, max=4096)
    x = sample_sizes(_rng(), spec, 100_000)
    assert x.max() == 4096 and x.min() >= 1


def test_azure_lengths_reproduce_trace_statistics() -> None:
    inp, out = sample_lengths(_rng(), TableLengths(dist="azure-2023-conv"), 500_000)
    # measured on the real trace: input mean 1155, p50 1020; output mean 211, p50 129
    assert abs(inp.mean() / 1155 - 1) < 0.02 and abs(np.median(inp) - 1020) <= 10
    assert abs(out.mean() / 211 - 1) < 0.02 and abs(np.median(out) - 129) <= 3


def test_parametric_lengths() -> None:
    spec = SeparateLengths.model_validate(
        {
            "input": {"dist": "lognormal", "mean": 800, "p99": 6000, "max": 8192},
            "output": {"dist": "constant", "value": 128},
        }
    )
    inp, out = sample_lengths(_rng(), spec, 10_000)
    assert inp.max() <= 8192 and set(out.tolist()) == {128}
