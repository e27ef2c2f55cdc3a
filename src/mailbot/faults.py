"""Fault injection for crash tests: named points where the process kills itself (off by default)."""

from __future__ import annotations

import os
import signal

ENV = "MAILBOT_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL ourselves here when $MAILBOT_CRASH_AT names this point, as a power cut would."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
