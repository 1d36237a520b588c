"""Peak memory of one run: the CUDA allocator's peak on a GPU, else the process RSS sampled in a thread.

``ru_maxrss`` is the peak since the process started, so in a process that runs several methods one
after another every method would report the largest so far. ``PeakMemory`` instead samples the
resident set size (``/proc/self/statm``) every ``interval`` seconds while it is open and reports the
largest sample: the peak during this run (a spike shorter than the interval can be missed).
"""

from __future__ import annotations

import os
import resource
import threading

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Current resident set size of this process, or None where /proc is unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


class PeakMemory:
    """``with PeakMemory() as m: ...`` then ``m.peak_mb``: the peak during the block (MiB)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cuda = torch.cuda.is_available()

    def _sample(self) -> None:
        while True:
            rss = rss_bytes()
            if rss is not None:
                self.peak = max(self.peak, rss)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        elif rss_bytes() is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes() or 0)

    @property
    def peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        if self._thread is None:  # no /proc: fall back to the process's lifetime peak (KiB on Linux)
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return self.peak / 2**20
