"""Statistics behind every row: percentiles, confidence intervals, the CI stopping rule, Poisson arrivals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from infermeter.scenarios.stats import (
    MIN_CI_SAMPLES,
    batch_means_ci,
    ci_reached,
    latency_stats,
    mean_ci,
    percentile,
    percentiles,
    poisson_schedule,
    t_quantile,
    throughput_ci,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = arrays(np.float64, st.integers(1, 200), elements=finite)


# ---- percentiles ----------------------------------------------------------------------------------------

def test_percentile_of_a_uniform_grid_is_q():
    # on the grid i/(n-1) the order statistic at position (n-1)q/100 is exactly q/100
    grid = np.linspace(0.0, 1.0, 1001)
    shuffled = np.random.default_rng(1).permutation(grid)
    for q in (0, 1, 12.5, 50, 90, 95, 99, 99.9, 100):
        assert percentile(shuffled, q) == pytest.approx(q / 100, abs=1e-12)


def test_percentile_interpolates_between_order_statistics():
    # 4 values: position of q=50 is 1.5, halfway between the 2nd and 3rd smallest
    assert percentile([40.0, 10.0, 30.0, 20.0], 50) == pytest.approx((20.0 + 30.0) / 2)
    # q=90: position 2.7 -> 30 + 0.7 * (40 - 30)
    assert percentile([40.0, 10.0, 30.0, 20.0], 90) == pytest.approx(30.0 + 0.7 * 10.0)


def test_percentiles_of_exponential_samples_match_the_analytic_quantiles():
    rate = 2.0
    x = np.random.default_rng(7).exponential(1 / rate, size=200_000)
    qs = [10, 50, 90, 95, 99]
    got = percentiles(x, qs)
    for q, v in zip(qs, got, strict=True):
        assert v == pytest.approx(-math.log(1 - q / 100) / rate, rel=0.03)


@given(samples, st.floats(0, 100))
def test_percentile_matches_numpy_default(x, q):
    assert percentile(x, q) == pytest.approx(float(np.percentile(x, q)), rel=1e-9, abs=1e-6)


@given(samples, st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotonic_in_q_and_within_range(x, q1, q2):
    lo, hi = sorted((q1, q2))
    p_lo, p_hi = percentile(x, lo), percentile(x, hi)
    assert p_lo <= p_hi
    assert x.min() <= p_lo and p_hi <= x.max()


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], 101)


def test_latency_stats_has_the_row_keys_and_agrees_with_numpy():
    x = np.random.default_rng(3).gamma(2.0, 3.0, size=501)
    s = latency_stats(x)
    assert set(s) == {"latency_ms_mean", "latency_ms_p50", "latency_ms_p90", "latency_ms_p95", "latency_ms_p99",
                      "latency_ms_std", "latency_ms_min", "latency_ms_max"}
    assert s["latency_ms_mean"] == pytest.approx(x.mean())
    for q in (50, 90, 95, 99):
        assert s[f"latency_ms_p{q}"] == pytest.approx(np.percentile(x, q))
    assert s["latency_ms_std"] == pytest.approx(x.std(ddof=1))
    assert (s["latency_ms_min"], s["latency_ms_max"]) == (x.min(), x.max())
    assert all(math.isnan(v) for v in latency_stats([]).values())


# ---- confidence intervals -------------------------------------------------------------------------------

def test_t_quantile_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2):
        assert t_quantile(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-9)
    for df in (3, 4, 5, 9, 29, 200):
        for p in (0.9, 0.975):
            assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=2e-3)


def test_mean_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    reps, n, mu = 2000, 15, 3.0
    data = rng.normal(mu, 2.0, size=(reps, n))
    covered = 0
    for row in data:
        m, hw = mean_ci(row)
        covered += abs(m - mu) <= hw
    # binomial sd of the coverage over 2000 reps is 0.005
    assert covered / reps == pytest.approx(0.95, abs=0.02)


def _ar1(rng, reps, n, phi):
    """Autocorrelated series x_t = phi x_{t-1} + e_t (mean 0), one row per replicate."""
    e = rng.normal(size=(reps, n))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def test_batch_means_covers_autocorrelated_samples_where_the_plain_interval_does_not():
    series = _ar1(np.random.default_rng(5), reps=300, n=2000, phi=0.9)
    plain = np.mean([abs(m) <= hw for m, hw in map(mean_ci, series)])
    batched = np.mean([abs(m) <= hw for m, hw in map(batch_means_ci, series)])
    assert plain < 0.6  # iid formula: far too narrow under strong correlation
    assert batched > 0.85
    assert batched > plain + 0.25


def test_batch_means_is_unknown_below_the_minimum_sample_count():
    assert math.isinf(batch_means_ci(np.ones(MIN_CI_SAMPLES - 1))[1])
    assert math.isfinite(batch_means_ci(np.arange(MIN_CI_SAMPLES, dtype=float))[1])


def test_throughput_ci_point_is_items_over_duration_and_narrow_for_steady_completions():
    rng = np.random.default_rng(2)
    t0 = 100.0
    service = rng.normal(0.010, 0.0002, size=400)
    done = t0 + np.cumsum(service)
    thr, hw = throughput_ci(done, t0, items_per_request=8)
    assert thr == pytest.approx(400 * 8 / (done[-1] - t0))
    assert 0 < hw / thr < 0.01
    # noisier service -> wider interval
    noisy_done = t0 + np.cumsum(rng.exponential(0.010, size=400))
    thr2, hw2 = throughput_ci(noisy_done, t0, items_per_request=8)
    assert hw2 / thr2 > 3 * hw / thr


# ---- the CI stopping rule -------------------------------------------------------------------------------

def _first_n_reaching(x: np.ndarray, target: float) -> int | None:
    for n in range(MIN_CI_SAMPLES, x.size + 1, 5):
        if ci_reached(x[:n], target):
            return n
    return None


def test_ci_rule_stops_sooner_for_low_variance_samples():
    rng = np.random.default_rng(9)
    steady = rng.normal(10.0, 0.1, size=3000)
    jittery = rng.normal(10.0, 2.0, size=3000)
    n_steady = _first_n_reaching(steady, 0.01)
    n_jittery = _first_n_reaching(jittery, 0.01)
    assert n_steady is not None and n_jittery is not None
    assert n_steady < n_jittery
    # and the rule agrees with the interval it is built on
    m, hw = batch_means_ci(steady[:n_steady])
    assert hw / m <= 0.01


def test_ci_rule_needs_a_positive_target():
    with pytest.raises(ValueError):
        ci_reached(np.ones(50), 0.0)


# ---- Poisson arrivals -----------------------------------------------------------------------------------

def test_poisson_gaps_have_the_right_mean_and_dispersion():
    rate = 50.0
    arrivals = poisson_schedule(rate, np.random.default_rng(0), n=20_000)
    gaps = np.diff(np.concatenate([[0.0], arrivals]))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential: CV = 1


def test_poisson_over_a_window_has_a_poisson_count():
    rate, window = 200.0, 10.0
    arrivals = poisson_schedule(rate, np.random.default_rng(4), duration_s=window)
    assert arrivals.max() < window and np.all(np.diff(arrivals) >= 0)
    assert abs(arrivals.size - rate * window) < 4 * math.sqrt(rate * window)


def test_poisson_conditioned_on_count_fills_the_window_exactly_and_still_looks_poisson():
    rate, n = 40.0, 8000
    arrivals = poisson_schedule(rate, np.random.default_rng(8), n=n, duration_s=n / rate)
    assert arrivals.size == n and arrivals.min() >= 0 and arrivals.max() < n / rate
    gaps = np.diff(arrivals)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


def test_poisson_schedule_is_reproducible_by_seed():
    a = poisson_schedule(20.0, np.random.default_rng(123), n=50)
    b = poisson_schedule(20.0, np.random.default_rng(123), n=50)
    c = poisson_schedule(20.0, np.random.default_rng(124), n=50)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@settings(max_examples=30)
@given(st.floats(0.5, 500), st.integers(0, 300))
def test_poisson_schedule_is_sorted_and_non_negative(rate, n):
    arrivals = poisson_schedule(rate, np.random.default_rng(0), n=n)
    assert arrivals.size == n
    assert np.all(arrivals >= 0) and np.all(np.diff(arrivals) >= 0)
