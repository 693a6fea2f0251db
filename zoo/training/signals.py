"""Signals during training: Ctrl-C stops cleanly, and a test hook raises a signal at a chosen step.

``ZOO_TRAIN_SIGNAL=NAME@STEP`` (e.g. ``SIGKILL@13`` or ``SIGINT@13``) makes the training process send
itself that signal right after optimiser step ``STEP``. The crash and Ctrl-C recovery tests use it to stop
a run at a known point, without timing: ``SIGKILL`` is a crash (the run resumes from its last epoch
checkpoint), ``SIGINT`` is a Ctrl-C (the run saves after that batch and exits with status 130).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

__all__ = ["SIGNAL_HOOK_ENV", "SignalHook", "StopFlag"]

SIGNAL_HOOK_ENV = "ZOO_TRAIN_SIGNAL"


class StopFlag:
    """Ctrl-C once: finish the current batch, save and stop. Twice: abort at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after this batch and saving (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class SignalHook:
    """The ``ZOO_TRAIN_SIGNAL`` hook: raise a signal in this process after a given optimiser step."""

    def __init__(self, value: str | None = None) -> None:
        value = os.environ.get(SIGNAL_HOOK_ENV, "") if value is None else value
        self.signum: int | None = None
        self.step = -1
        if not value:
            return
        name, at, step = value.strip().partition("@")
        name = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
        try:
            self.signum = int(signal.Signals[name])
            self.step = int(step)
        except (KeyError, ValueError):
            raise ValueError(
                f"{SIGNAL_HOOK_ENV}={value!r}: expected SIGNAL@STEP, e.g. SIGKILL@13 or SIGINT@13"
            ) from None
        if not at or self.step < 1:
            raise ValueError(f"{SIGNAL_HOOK_ENV}={value!r}: the step after @ must be an integer >= 1")

    def after_step(self, global_step: int) -> None:
        """Raise the signal if ``global_step`` is the chosen one (a Python handler runs before this returns)."""
        if self.signum is not None and global_step == self.step:
            signal.raise_signal(self.signum)
