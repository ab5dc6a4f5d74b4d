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

    energy_net_j is always reported beside gross energy_j, never instead of it. A net energy below zero
    (the cell drew less than the idle baseline: the baseline was taken warm, or the board changed state)
    is not a result: energy_net_j stays empty and energy_net_note says why.
    """
    out = {"energy_j": energy_j, "energy_window_s": window_s, "power_avg_w": None, "energy_net_j": None,
           "energy_net_note": None, "energy_per_item_j": None, "items_per_j": None}
    if energy_j is None:
        return out
    if window_s:
        out["power_avg_w"] = energy_j / window_s
        if power_idle_w is None:
            out["energy_net_note"] = "no idle baseline (--idle-time-s 0, or idle power unreadable)"
        else:
            net = energy_j - power_idle_w * window_s
            if net < 0:
                out["energy_net_note"] = (f"net energy would be negative ({net:.3g} J): mean power "
                                          f"{energy_j / window_s:.1f} W below the idle baseline {power_idle_w:.1f} W")
            else:
                out["energy_net_j"] = net
    if items:
        out["energy_per_item_j"] = energy_j / items
        if energy_j > 0:
            out["items_per_j"] = items / energy_j
    return out


def window_power_w(times_s: Sequence[float], values: Sequence[float], t_start: float, t_end: float,
                   cumulative: bool = False) -> float:
    """Mean power over [t_start, t_end]: of a power trace (W), or of a cumulative energy trace (J) when
    cumulative, whose mean power is its rise over the window divided by the window."""
    if cumulative:
        return (interpolate(times_s, values, t_end) - interpolate(times_s, values, t_start)) / (t_end - t_start)
    return window_mean(times_s, values, t_start, t_end)


def settled_idle(times_s: Sequence[float], values: Sequence[float], window_s: float, tolerance: float,
                 cumulative: bool = False) -> tuple[bool, float | None, float | None]:
    """The settled-idle rule on a trace that ends now: (settled, mean power of the last window_s, mean power of
    the window_s before it). Settled when the last window's mean is within `tolerance` (a fraction) of the
    previous one's: power has stopped falling after the load. (False, None, None) while the trace is shorter
    than two windows."""
    if len(times_s) < 2 or times_s[-1] - times_s[0] < 2 * window_s:
        return False, None, None
    t_end = times_s[-1]
    last = window_power_w(times_s, values, t_end - window_s, t_end, cumulative)
    prev = window_power_w(times_s, values, t_end - 2 * window_s, t_end - window_s, cumulative)
    return prev > 0 and abs(last - prev) <= tolerance * prev, last, prev


def counter_update_period_s(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    """How often a counter read in a tight loop changed: the median time between successive changes
    (None with fewer than three changes: two gaps are needed to tell a period from a one-off)."""
    changes = [t for (t, v), prev in zip(zip(times_s[1:], values[1:]), values) if v != prev]
    gaps = sorted(b - a for a, b in zip(changes, changes[1:]))
    if len(gaps) < 2:
        return None
    mid = len(gaps) // 2
    return gaps[mid] if len(gaps) % 2 else 0.5 * (gaps[mid - 1] + gaps[mid])


def counter_min_window_s(period_s: float | None, max_error: float) -> float:
    """The shortest window whose energy a counter updating every period_s reads within max_error: each read
    lags the true energy by less than one period, so the difference of two reads is off by less than one
    period's energy, period_s / window of the window's energy."""
    return 0.0 if not period_s else period_s / max_error
