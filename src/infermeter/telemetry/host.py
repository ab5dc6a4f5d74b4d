"""Host readings through psutil: cumulative CPU times (system-wide and this process) and resident memory.

Utilisation is derived from differences of cumulative times between two reads, so it is exact over any
interval and needs no priming call (unlike psutil.cpu_percent(None), whose state is shared process-wide).
RSS of a process covers all of its threads, so engine thread pools are included.
"""

from __future__ import annotations

import psutil

MB = 1024 * 1024


class HostReader:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._proc = psutil.Process(pid)

    def sample(self) -> dict:
        """Cumulative counters now: cpu_busy_s/cpu_total_s summed over all cores, proc_cpu_s, rss_mb."""
        t = psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        total = sum(t)
        # guest time is already inside user time on Linux; counting it twice would inflate the total
        total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
        with self._proc.oneshot():
            pt = self._proc.cpu_times()
            rss = self._proc.memory_info().rss
        return {"cpu_busy_s": total - idle, "cpu_total_s": total, "proc_cpu_s": pt.user + pt.system,
                "rss_mb": rss / MB}

    def thread_cpu_s(self) -> dict[int, float]:
        """CPU seconds (user + system) of each of the process's threads, by thread id."""
        return {t.id: t.user_time + t.system_time for t in self._proc.threads()}


def busiest_thread_pct(before: dict[int, float], after: dict[int, float], wall_s: float) -> float | None:
    """The busiest thread's CPU use between two thread_cpu_s() reads, % of one core (a thread started in
    between counts from zero)."""
    if wall_s <= 0 or not after:
        return None
    return 100.0 * max(cpu - before.get(tid, 0.0) for tid, cpu in after.items()) / wall_s


def cpu_util_pct(before: dict, after: dict) -> float | None:
    """System-wide CPU utilisation between two host samples, 0-100 over all cores."""
    total = after["cpu_total_s"] - before["cpu_total_s"]
    if total <= 0:
        return None
    busy = after["cpu_busy_s"] - before["cpu_busy_s"]
    # busy is a difference of sums of the kernel's per-state counters: with nothing running it can come
    # out as -1e-10 in floating point, and the states are sampled one after another, so clamp to 0..100
    return min(100.0, max(0.0, 100.0 * busy / total))


def proc_cpu_util_pct(before: dict, after: dict, wall_s: float) -> float | None:
    """This process's CPU use between two samples, psutil's convention: 100 per fully busy core."""
    if wall_s <= 0:
        return None
    return 100.0 * (after["proc_cpu_s"] - before["proc_cpu_s"]) / wall_s
