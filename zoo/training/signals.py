"""Signals during training: Ctrl-C and SIGTERM stop cleanly, and a test hook raises signals at chosen steps.

Ctrl-C (SIGINT) or SIGTERM (a scheduler's or ``kill``'s polite stop) once: the run finishes the current
batch, saves and records ``interrupted``; ``zoo train`` exits with 128 + the signal number (130, 143).
A second one aborts at once (``KeyboardInterrupt``); the run still records ``interrupted`` in run.json.

``ZOO_TRAIN_SIGNAL=NAME@STEP[,NAME@STEP...]`` (e.g. ``SIGKILL@13``, ``SIGINT@13`` or ``SIGINT@2,SIGINT@2``)
makes the training process send itself each signal right after optimiser step ``STEP``. The crash and
Ctrl-C recovery tests use it to stop a run at a known point, without timing: ``SIGKILL`` is a crash (the
run resumes from its last epoch checkpoint), ``SIGINT`` is a Ctrl-C (the run saves after that batch and
exits with status 130), ``SIGSTOP`` holds a run still while a test looks at it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from zoo.errors import ArgumentValueError

__all__ = ["SIGNAL_HOOK_ENV", "SignalHook", "StopFlag"]

SIGNAL_HOOK_ENV = "ZOO_TRAIN_SIGNAL"


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Ctrl-C or SIGTERM once: finish the current batch, save and stop. Twice: abort at once.

    ``signum`` is the signal that asked for the stop (None while none did).
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in _STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum
        name = "interrupt" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: stopping after this batch and saving (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


class SignalHook:
    """The ``ZOO_TRAIN_SIGNAL`` hook: raise signals in this process after given optimiser steps."""

    def __init__(self, value: str | None = None) -> None:
        value = os.environ.get(SIGNAL_HOOK_ENV, "") if value is None else value
        self.plan: list[tuple[int, int]] = []  # (step, signal), in the order given
        for item in value.split(",") if value.strip() else []:
            name, at, step = item.strip().partition("@")
            name = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
            try:
                signum, when = int(signal.Signals[name]), int(step)
            except (KeyError, ValueError):
                raise ArgumentValueError(
                    f"{SIGNAL_HOOK_ENV}={value!r}: expected SIGNAL@STEP[,SIGNAL@STEP...], e.g. SIGKILL@13 or SIGINT@13"
                ) from None
            if not at or when < 1:
                raise ArgumentValueError(f"{SIGNAL_HOOK_ENV}={value!r}: the step after @ must be an integer >= 1")
            self.plan.append((when, signum))

    @property
    def signum(self) -> int | None:
        """The first planned signal (None without a plan)."""
        return self.plan[0][1] if self.plan else None

    @property
    def step(self) -> int:
        return self.plan[0][0] if self.plan else -1

    def after_step(self, global_step: int) -> None:
        """Raise the signals planned for ``global_step`` (a Python handler runs before each call returns)."""
        for when, signum in self.plan:
            if when == global_step:
                signal.raise_signal(signum)
