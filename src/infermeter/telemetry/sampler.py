"""A background thread that calls a read function at a fixed rate and keeps every sample with its time.

Times come from time.perf_counter() (the clock the scenarios time with), taken as the midpoint of
each read. start() and stop() each take one sample on the calling thread, so the samples always
bracket whatever happened between the two calls: window edges are interpolated, never extrapolated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MIN_INTERVAL_MS = 50.0  # NVML's readings do not update faster than this


class Sampler:
    def __init__(self, read: Callable[[], dict], interval_ms: float, name: str = "infermeter-telemetry") -> None:
        if not interval_ms >= MIN_INTERVAL_MS:
            raise ValueError(f"interval_ms={interval_ms} is below the {MIN_INTERVAL_MS:g} ms floor")
        self._read = read
        self.interval_s = interval_ms / 1000.0
        self._name = name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.samples: list[dict] = []
        self.errors: list[str] = []   # first few failures, said once each
        self.error_count = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _take(self) -> None:
        t_before = time.perf_counter()
        try:
            values = self._read()
        except Exception as e:  # a failing reader must not kill the thread silently: keep going and tell
            self.error_count += 1
            msg = f"{type(e).__name__}: {e}"
            if len(self.errors) < 5 and msg not in self.errors:
                self.errors.append(msg)
            return
        t_after = time.perf_counter()
        values["t"] = 0.5 * (t_before + t_after)
        self.samples.append(values)

    def _loop(self, t_first: float) -> None:
        k = 1
        while True:
            deadline = t_first + k * self.interval_s
            if self._stop.wait(max(0.0, deadline - time.perf_counter())):
                return
            self._take()
            # after a stall, skip the missed ticks instead of firing them in a burst
            k = max(k + 1, int((time.perf_counter() - t_first) / self.interval_s) + 1)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("sampler already running; stop() it first")
        self.samples, self.errors, self.error_count = [], [], 0
        self._stop.clear()
        t_first = time.perf_counter()
        self._take()
        self._thread = threading.Thread(target=self._loop, args=(t_first,), name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> list[dict]:
        """Stop the thread, take the closing sample, return all samples. Safe to call more than once."""
        thread, self._thread = self._thread, None
        if thread is None:
            return self.samples
        self._stop.set()
        thread.join()
        self._take()
        return self.samples
