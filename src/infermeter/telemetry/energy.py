"""Energy arithmetic on traces and counters: pure functions, no hardware, no clocks.

A trace is two equal-length sequences, times (seconds, monotonic, increasing) and values. Between
samples a trace is taken as linear, so integrating it is the trapezoid rule and its value at a
window edge that falls between two samples is interpolated linearly.
"""

from __future__ import annotations

from collections.abc import Sequence


def interpolate(times_s: Sequence[float], values: Sequence[float], t: float) -> float:
    """Value of the piecewise-linear trace at t; t must lie within [times_s[0], times_s[-1]]."""
    if not times_s:
        raise ValueError("empty trace")
    if t < times_s[0] or t > times_s[-1]:
        raise ValueError(f"t={t} outside the trace [{times_s[0]}, {times_s[-1]}]")
    lo, hi = 0, len(times_s) - 1
    while hi - lo > 1:  # bisect for the segment holding t
        mid = (lo + hi) // 2
        if times_s[mid] <= t:
            lo = mid
        else:
            hi = mid
    t_lo, t_hi = times_s[lo], times_s[hi]
    if t_hi == t_lo:
        return float(values[hi])
    frac = (t - t_lo) / (t_hi - t_lo)
    return float(values[lo]) + frac * (float(values[hi]) - float(values[lo]))


def trim_trace(times_s: Sequence[float], values: Sequence[float], t_start: float, t_end: float,
               ) -> tuple[list[float], list[float]]:
    """The trace restricted to [t_start, t_end], with edge values interpolated at exactly t_start and t_end.

    The trace must bracket the window (a sample at or before t_start and one at or after t_end): the
    monitor guarantees this by sampling in start() and stop(); anything else would be extrapolation.
    """
    if len(times_s) != len(values):
        raise ValueError(f"trace has {len(times_s)} times but {len(values)} values")
    if t_end < t_start:
        raise ValueError(f"window ends ({t_end}) before it starts ({t_start})")
    if len(times_s) < 2 or times_s[0] > t_start or times_s[-1] < t_end:
        span = f"[{times_s[0]}, {times_s[-1]}]" if times_s else "empty"
        raise ValueError(f"trace {span} does not bracket the window [{t_start}, {t_end}]")
    out_t = [t_start]
    out_v = [interpolate(times_s, values, t_start)]
    for t, v in zip(times_s, values):
        if t_start < t < t_end:
            out_t.append(float(t))
            out_v.append(float(v))
    out_t.append(t_end)
    out_v.append(interpolate(times_s, values, t_end))
    return out_t, out_v


def trapezoid(times_s: Sequence[float], values: Sequence[float]) -> float:
    """Integral of the piecewise-linear trace over its own span (W over s gives J)."""
    total = 0.0
    for i in range(1, len(times_s)):
        total += 0.5 * (float(values[i]) + float(values[i - 1])) * (times_s[i] - times_s[i - 1])
    return total


def window_integral(times_s: Sequence[float], values: Sequence[float], t_start: float, t_end: float) -> float:
    """Integral of the trace over [t_start, t_end], edges interpolated."""
    return trapezoid(*trim_trace(times_s, values, t_start, t_end))


def window_mean(times_s: Sequence[float], values: Sequence[float], t_start: float, t_end: float) -> float:
    """Time-weighted mean of the trace over [t_start, t_end] (the value itself for a zero-length window)."""
    if t_end == t_start:
        return interpolate(times_s, values, t_start)
    return window_integral(times_s, values, t_start, t_end) / (t_end - t_start)


def wrapped_delta(start: int, end: int, wrap_range: int) -> int:
    """Increase of a counter that wraps to 0 after reaching wrap_range (RAPL's max_energy_range_uj).

    At most one wrap between two reads can be seen; the monitor reads often enough that there is never more.
    """
    if end >= start:
        return end - start
    if wrap_range <= 0:
        raise ValueError(f"counter went down ({start} -> {end}) and has no wrap range")
    return wrap_range - start + end


def relative_difference(value: float | None, reference: float | None) -> float | None:
    """(value - reference) / reference; None when either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return (value - reference) / reference


def derived_energy_fields(energy_j: float | None, window_s: float | None, items: int | None,
                          power_idle_w: float | None) -> dict:
    """Row fields that follow from gross energy, its window, the items done in it and the idle power.

    energy_net_j is always reported beside gross energy_j, never instead of it.
    """
    out = {"energy_j": energy_j, "energy_window_s": window_s, "power_avg_w": None, "energy_net_j": None,
           "energy_per_item_j": None, "items_per_j": None}
    if energy_j is None:
        return out
    if window_s:
        out["power_avg_w"] = energy_j / window_s
        if power_idle_w is not None:
            out["energy_net_j"] = energy_j - power_idle_w * window_s
    if items:
        out["energy_per_item_j"] = energy_j / items
        if energy_j > 0:
            out["items_per_j"] = items / energy_j
    return out
