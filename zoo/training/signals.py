"""Signals during training: Ctrl-C and SIGTERM stop cleanly (once: save and stop; twice: abort), and
``ZOO_TRAIN_SIGNAL=SIGKILL@13`` sends a signal after a chosen step, for the recovery tests."""

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

    requested, signum = False, None  # set by the first signal

    def __enter__(self) -> StopFlag:
        main = threading.current_thread() is threading.main_thread()  # only it may set handlers
        self._previous = {sig: signal.signal(sig, self._handle) for sig in _STOP_SIGNALS} if main else {}
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


class SignalHook:
    """The ``ZOO_TRAIN_SIGNAL`` hook: raise signals in this process after given optimiser steps."""

    def __init__(self, value: str | None = None) -> None:
        value = os.environ.get(SIGNAL_HOOK_ENV, "") if value is None else value
        self.plan: list[tuple[int, int]] = []  # (step, signal), in the order given
        for item in value.split(",") if value.strip() else []:
            name, _, step = item.strip().upper().partition("@")
            name = name if name.startswith("SIG") else f"SIG{name}"
            if name not in signal.Signals.__members__ or not step.isdigit() or int(step) < 1:
                raise ArgumentValueError(
                    f"{SIGNAL_HOOK_ENV}={value!r}: expected SIGNAL@STEP[,SIGNAL@STEP...] with a step of at least 1, "
                    "e.g. SIGKILL@13 or SIGINT@13"
                )
            self.plan.append((int(step), int(signal.Signals[name])))

    def after_step(self, global_step: int) -> None:
        """Raise the signals planned for ``global_step`` (a Python handler runs before each call returns)."""
        for when, signum in self.plan:
            if when == global_step:
                signal.raise_signal(signum)
