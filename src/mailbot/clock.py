"""The one source of "now": a clock object injected everywhere, so tests and --now move time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


class Clock:
    """Real time, always timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FixedClock(Clock):
    """A clock that reads a set instant (for `--now` and tests); `advance` moves it on."""

    instant: datetime = field(default_factory=lambda: datetime(2026, 1, 5, 9, 0, tzinfo=UTC))

    def __post_init__(self) -> None:
        if self.instant.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware instant")

    def now(self) -> datetime:
        return self.instant

    def advance(self, delta: timedelta) -> None:
        self.instant += delta


@dataclass
class OffsetClock(Clock):
    """Real time shifted so that it read `start` when created: `--now` for the daemon."""

    start: datetime
    _anchor: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.start + (datetime.now(UTC) - self._anchor)
