"""Progress lines for long jobs' logs: ``what: 120/400 (30%), 41 s elapsed, ETA 96 s``.

Plain lines through ``logging`` (no carriage returns), at most one every ``every_s`` seconds
plus the last one, so ``tail -f results/logs/...`` shows where a job is and when it will end.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("pipeline.progress")


class ProgressLog:
    def __init__(self, what: str, total: int, every_s: float = 10.0, start: int = 0, clock=time.monotonic):
        self.what, self.total, self.every_s, self.clock = what, int(total), float(every_s), clock
        self.start_done = self.done = int(start)
        self.t0 = self.last = clock()

    def line(self, extra: str = "") -> str:
        elapsed = self.clock() - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = f"ETA {(self.total - self.done) / rate:.0f} s" if rate > 0 and self.done < self.total else (
            "done" if self.done >= self.total else "ETA unknown")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.what}: {self.done}/{self.total} ({pct:.0f}%), {elapsed:.0f} s elapsed, {eta}" + (f", {extra}" if extra else "")

    def step(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            log.info(self.line(extra))
