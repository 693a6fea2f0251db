"""Signals during training: Ctrl-C and SIGTERM stop cleanly, and a test hook raises signals at chosen steps.

Once, the run finishes its batch, saves, records ``interrupted`` and ``zoo train`` exits with 128 + the signal
number; twice, it aborts (still recording ``interrupted``). ``ZOO_TRAIN_SIGNAL=NAME@STEP[,NAME@STEP...]`` (e.g.
``SIGKILL@13``) makes the process send itself each signal right after optimiser step ``STEP``: the crash and
Ctrl-C recovery tests stop runs at a known point this way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from zoo.errors import ArgumentValueError

SIGNAL_HOOK_ENV = "ZOO_TRAIN_SIGNAL"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Ctrl-C or SIGTERM once: finish the current batch, save and stop (``signum`` says which). Twice: abort."""

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

    def after_step(self, global_step: int) -> None:
        """Raise the signals planned for ``global_step`` (a Python handler runs before each call returns)."""
        for when, signum in self.plan:
            if when == global_step:
                signal.raise_signal(signum)
