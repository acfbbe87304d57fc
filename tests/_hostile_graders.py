"""Test-only graders that misbehave on sentinel inputs (imported by grading worker processes).

Each grades like ``answer_line`` except on its sentinel, where it hangs or kills its process.
Used through ``grade_many(..., grader="_hostile_graders:<function>")``.
"""

from __future__ import annotations

import os
import signal
import time

from pipeline.eval.grading import grade_answer_line

HANG = "<<HANG>>"  # sleeps forever; the worker's alarm interrupts it
HANG_HARD = "<<HANG_HARD>>"  # blocks SIGALRM first, so only the parent's watchdog can stop it
STUBBORN = "<<STUBBORN>>"  # swallows the alarm's exception and keeps sleeping
EXIT = "<<EXIT>>"  # kills the worker process outright
RAISE = "<<RAISE>>"  # raises an ordinary exception


def hostile(response: str, answer: str) -> bool:
    if HANG in response:
        while True:
            time.sleep(3600)
    if HANG_HARD in response:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        while True:
            time.sleep(3600)
    if STUBBORN in response:
        while True:
            try:
                time.sleep(3600)
            except BaseException:  # noqa: BLE001 - deliberately hostile
                pass
    if EXIT in response:
        os._exit(7)
    if RAISE in response:
        raise RuntimeError("hostile grader raised")
    return grade_answer_line(response, answer)


def hang_once(response: str, answer: str) -> bool:
    """Hangs on the first response it ever sees (across worker processes: a marker file named
    by $HANG_ONCE_MARKER records it), grades like ``answer_line`` afterwards."""
    marker = os.environ.get("HANG_ONCE_MARKER")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        while True:
            time.sleep(3600)
    return grade_answer_line(response, answer)


def even_length(response: str, answer: str) -> bool:
    """Not hostile: 'correct' when the response has an even number of characters, so that
    an untrained model's rollouts get mixed rewards (tests of the trainer's statistics)."""
    return len(response) % 2 == 0
