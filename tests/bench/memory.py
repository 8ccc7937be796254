"""Resident memory of the stack's processes, sampled in a background thread during a run. Each
process is measured with its whole tree (tests.support.pipeline.tree_rss_bytes): the Spark job's
figure is its Python driver and the JVM it starts (the stateful processor runs in that JVM)."""

from __future__ import annotations

import threading
from collections.abc import Callable

SPARK_JOB = "spark job (Python driver + JVM)"


class RssSampler:
    """Samples every named process tree every `every_s`; keeps the peak of each and of the sum of
    those `in_stack` (sampled at the same instant)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s = every_s
        self.peaks: dict[str, int] = {}
        self.peak_total = 0
        self.samples = 0
        self._sources: dict[str, tuple[Callable[[], int], bool]] = {}
        self._stack: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, name: str, rss: Callable[[], int], in_stack: bool = True) -> None:
        with self._lock:
            self._sources[name] = (rss, in_stack)
            if in_stack:
                self._stack.add(name)

    def forget(self, name: str) -> None:
        with self._lock:
            self._sources.pop(name, None)

    def sample(self) -> None:
        with self._lock:
            sources = dict(self._sources)
        total = 0
        for name, (rss, in_stack) in sources.items():
            value = rss()
            self.peaks[name] = max(self.peaks.get(name, 0), value)
            if in_stack:
                total += value
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.every_s):
                self.sample()

        self._thread = threading.Thread(target=loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def report(self) -> dict[str, object]:
        return {
            "peak_rss_bytes": dict(sorted(self.peaks.items())),
            "peak_stack_rss_bytes": self.peak_total,
            "in_stack": sorted(self._stack),
            "samples": self.samples,
        }
