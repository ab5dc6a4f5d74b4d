"""Statistics for latency samples: percentiles, confidence intervals, the CI stopping rule, Poisson arrivals.

Numpy only (no scipy): the t quantile uses exact forms for 1 and 2 degrees of freedom and a Cornish-Fisher
expansion beyond (within 0.2% of the exact 95% quantile from 3 degrees of freedom up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

#: the percentiles every result row carries, as latency_ms_p<q>
REPORTED_PERCENTILES = (50, 90, 95, 99)
#: below this many samples a confidence interval is reported as unknown (infinite half-width):
#: batch means needs a few batches of a few samples before its interval means anything
MIN_CI_SAMPLES = 20
#: batch means: between these many batches (more batches, narrower t; fewer, longer batches absorb correlation)
MIN_BATCHES, MAX_BATCHES = 5, 30


# ---- percentiles ----------------------------------------------------------------------------------------

def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics (numpy's default)."""
    return float(percentiles(values, [q])[0])


def percentiles(values: Sequence[float] | np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Several percentiles at once; sorting once. Position h = (n-1)·q/100 between sorted[floor h] and the next."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("percentile of no samples")
    q = np.asarray(qs, dtype=np.float64)
    if np.any((q < 0) | (q > 100)) or np.any(np.isnan(q)):
        raise ValueError(f"percentiles must lie in [0, 100], got {list(qs)}")
    h = (x.size - 1) * q / 100.0
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, x.size - 1)
    frac = h - lo
    # x[lo] + frac*(x[hi]-x[lo]) can step past x[hi] by rounding; clip keeps the result between neighbours
    return np.clip(x[lo] + frac * (x[hi] - x[lo]), x[lo], x[hi])


def latency_stats(latencies_ms: Sequence[float] | np.ndarray) -> dict[str, float]:
    """The latency summary every row carries: latency_ms_{mean,p50,p90,p95,p99,std,min,max}.

    std is the sample standard deviation (ddof=1; 0 for a single sample). NaN for every key when empty."""
    x = np.asarray(latencies_ms, dtype=np.float64).ravel()
    keys = ["mean"] + [f"p{q}" for q in REPORTED_PERCENTILES] + ["std", "min", "max"]
    if x.size == 0:
        return {f"latency_ms_{k}": float("nan") for k in keys}
    stats = {"latency_ms_mean": float(x.mean())}
    for q, v in zip(REPORTED_PERCENTILES, percentiles(x, REPORTED_PERCENTILES), strict=True):
        stats[f"latency_ms_p{q}"] = float(v)
    stats["latency_ms_std"] = float(x.std(ddof=1)) if x.size > 1 else 0.0
    stats["latency_ms_min"] = float(x.min())
    stats["latency_ms_max"] = float(x.max())
    return stats


# ---- confidence intervals -------------------------------------------------------------------------------

def t_quantile(p: float, df: int) -> float:
    """Quantile p of Student's t with df degrees of freedom."""
    if not 0 < p < 1:
        raise ValueError(f"t quantile: p must lie in (0, 1), got {p}")
    if df < 1:
        raise ValueError(f"t quantile: df must be >= 1, got {df}")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    v = float(df)
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def mean_ci(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the t confidence interval for the mean of independent samples.

    Half-width is inf with fewer than 2 samples."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        return float("nan"), float("inf")
    if x.size < 2:
        return float(x.mean()), float("inf")
    sem = x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(t_quantile(0.5 + confidence / 2, x.size - 1) * sem)


def default_batch_count(n: int) -> int:
    """About sqrt(n) batches of about sqrt(n) samples, clamped to [MIN_BATCHES, MAX_BATCHES]."""
    return int(min(MAX_BATCHES, max(MIN_BATCHES, math.isqrt(max(n, 0)))))


def batch_means_ci(samples: Sequence[float] | np.ndarray, n_batches: int | None = None,
                   confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) by non-overlapping batch means, which respects autocorrelation between
    consecutive samples (thermal drift, clock changes, queueing) that the plain t interval ignores.

    The series is cut into n_batches equal contiguous batches; the first n mod n_batches samples (the
    earliest) are left out so all batches weigh the same. Half-width is inf below MIN_CI_SAMPLES."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size < MIN_CI_SAMPLES:
        return (float(x.mean()) if x.size else float("nan")), float("inf")
    k = n_batches or default_batch_count(x.size)
    k = min(k, x.size // 2)  # every batch needs at least two samples
    b = x.size // k
    means = x[x.size - k * b:].reshape(k, b).mean(axis=1)
    return mean_ci(means, confidence)


def throughput_ci(done_times_s: Sequence[float] | np.ndarray, t_start_s: float, items_per_request: int,
                  n_batches: int | None = None, confidence: float = 0.95) -> tuple[float, float]:
    """(items/s, half-width) for throughput, by batch means over the completion timeline.

    Completions (sorted) are cut into k groups of equal request count; each group's time per item is
    the time between the last completion of the previous group (or t_start) and its own last completion,
    over its items. Equal counts make the mean of those times exactly duration/items, so the point
    estimate is the overall throughput; the half-width carries over by the delta method (relative
    half-width of time-per-item = relative half-width of its inverse, to first order)."""
    d = np.sort(np.asarray(done_times_s, dtype=np.float64).ravel())
    n = d.size
    if n == 0:
        return float("nan"), float("inf")
    items = n * items_per_request
    duration = d[-1] - t_start_s
    thr = items / duration if duration > 0 else float("nan")
    if n < MIN_CI_SAMPLES or not duration > 0:
        return thr, float("inf")
    k = min(n_batches or default_batch_count(n), n // 2)
    b = n // k
    r = n - k * b
    first_edge = d[r - 1] if r > 0 else t_start_s
    edges = np.concatenate([[first_edge], d[r + b - 1::b][:k]])
    time_per_item = np.diff(edges) / (b * items_per_request)
    mean_tpi, hw_tpi = mean_ci(time_per_item, confidence)
    if not mean_tpi > 0:
        return thr, float("inf")
    return float(thr), float(thr * hw_tpi / mean_tpi)


def relative(mean: float, half_width: float) -> float:
    """Half-width over |mean|; inf when the mean is zero or unknown."""
    if not math.isfinite(half_width) or not math.isfinite(mean) or mean == 0:
        return float("inf")
    return abs(half_width / mean)


def ci_reached(samples: Sequence[float] | np.ndarray, target: float, confidence: float = 0.95) -> bool:
    """True when the batch-means CI half-width of the mean is within `target` (a fraction) of the mean."""
    if not target > 0:
        raise ValueError(f"CI target must be a positive fraction, got {target}")
    return relative(*batch_means_ci(samples, confidence=confidence)) <= target


# ---- arrivals -------------------------------------------------------------------------------------------

def poisson_schedule(rate_qps: float, rng: np.random.Generator, *, n: int | None = None,
                     duration_s: float | None = None) -> np.ndarray:
    """Arrival offsets (s, sorted, from 0) of a Poisson process at rate_qps.

    Given n: the first n arrivals (cumulative exponential gaps, mean 1/rate). Given duration_s: every
    arrival in [0, duration_s) (their count is Poisson). Given both: exactly n arrivals in [0, duration_s),
    i.e. the Poisson process conditioned on its count, whose arrival times are sorted uniforms; the server
    scenario uses this with n = rate*duration so the offered rate over the window is exactly the target
    (an unconditioned 3 s window at 20 qps would offer 20 +- 2.6 qps by chance alone)."""
    if not rate_qps > 0:
        raise ValueError(f"arrival rate must be positive, got {rate_qps}")
    if n is None and duration_s is None:
        raise ValueError("poisson_schedule needs n, duration_s, or both")
    if n is not None and n < 0:
        raise ValueError(f"arrival count must not be negative, got {n}")
    if duration_s is not None and not duration_s > 0:
        raise ValueError(f"window must be positive, got {duration_s}")
    if n is not None and duration_s is not None:
        return np.sort(rng.uniform(0.0, duration_s, size=n))
    if n is not None:
        return np.cumsum(rng.exponential(1.0 / rate_qps, size=n))
    # draw in chunks until the window is passed
    chunks, t = [], 0.0
    while t < duration_s:
        gaps = rng.exponential(1.0 / rate_qps, size=max(16, int(rate_qps * (duration_s - t) * 1.2) + 16))
        times = t + np.cumsum(gaps)
        chunks.append(times)
        t = float(times[-1])
    arrivals = np.concatenate(chunks)
    return arrivals[arrivals < duration_s]
