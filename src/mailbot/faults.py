"""Fault injection for crash tests: named points where the process kills itself (off by default)."""

from __future__ import annotations

import os
import signal

ENV = "MAILBOT_CRASH_AT"

# Every point, in the order a message meets them: after each pipeline stage, around the
# commit that records the decision, and around the hand-over to the SMTP server.
POINTS = (
    "after-fetch",
    "after-parse",
    "after-thread",
    "after-screen",
    "after-decide",
    "after-classify",
    "after-route",
    "after-apply",
    "before-commit",
    "after-commit",
    "after-claim",
    "after-send",
    "after-record",
)


def crash_point(name: str) -> None:
    """SIGKILL ourselves here when $MAILBOT_CRASH_AT names this point, as a power cut would."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
