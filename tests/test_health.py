"""Health: the silent-stop guard alerts once per outage, on time, and says when it is over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailbot.health import HealthWatch, check_health

START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)  # 09:00 GMT, Tuesday
BOX = "enquiries@council.example.gov.uk"
N = timedelta(minutes=30)


def decide(now: datetime, **kwargs: object):  # type: ignore[no-untyped-def]
    args: dict = {
        "now": now,
        "started_at": START,
        "last_success": None,
        "token_failing_since": None,
        "alert_after": N,
        "alerted_at": None,
        "mailbox": BOX,
    }
    args.update(kwargs)
    return check_health(**args)


def test_quiet_until_n_minutes_without_a_check() -> None:
    ok_at = START + timedelta(minutes=5)
    assert decide(ok_at + N - timedelta(seconds=1), last_success=ok_at) is None
    alert = decide(ok_at + N, last_success=ok_at)
    assert alert is not None and alert.kind == "alert"
    assert alert.subject == f"mailbot has not checked {BOX} for 30 minutes"
    assert "last checked" in alert.text and "09:05 on Tuesday 3 November 2026" in alert.text
    assert "mailbot check --connect" in alert.text


def test_never_connected_counts_from_start() -> None:
    assert decide(START + timedelta(minutes=29)) is None
    alert = decide(START + timedelta(minutes=45))
    assert alert is not None
    assert "started at 09:00 on Tuesday 3 November 2026" in alert.text
    assert "45 minutes" in alert.subject


def test_token_failure_alerts_at_once_with_the_reason() -> None:
    failed = START + timedelta(minutes=2)
    alert = decide(
        failed,
        last_success=START + timedelta(minutes=1),
        token_failing_since=failed,
        token_error="Microsoft sign-in refused (AADSTS7000222): the client secret has expired",
    )
    assert alert is not None and alert.subject == f"mailbot cannot sign in to {BOX}"
    assert "AADSTS7000222" in alert.text


def test_summer_time_is_shown_as_the_clerk_reads_a_clock() -> None:
    july = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    alert = decide(july + N, started_at=july)
    assert alert is not None and "09:00 on Wednesday 1 July 2026" in alert.text


def test_one_alert_per_outage_then_recovery() -> None:
    watch = HealthWatch(started_at=START, alert_after=N)
    watch.succeeded(START)
    assert watch.check(START + timedelta(minutes=10), mailbox=BOX) is None
    first = watch.check(START + timedelta(minutes=31), mailbox=BOX)
    assert first is not None and first.kind == "alert"
    # Still down an hour later: no second email.
    assert watch.check(START + timedelta(minutes=91), mailbox=BOX) is None
    # A token failure during the same outage is not a new outage either.
    assert (
        watch.check(START + timedelta(minutes=95), mailbox=BOX, token_failing_since=START) is None
    )
    watch.succeeded(START + timedelta(minutes=100))
    # Sign-in still failing (old token in use): not yet recovered.
    assert (
        watch.check(START + timedelta(minutes=100), mailbox=BOX, token_failing_since=START) is None
    )
    back = watch.check(START + timedelta(minutes=101), mailbox=BOX)
    assert back is not None and back.kind == "recovered"
    assert "10:40" in back.text
    assert watch.alerted_at is None
    # A later outage is a new one, and alerts again.
    again = watch.check(START + timedelta(minutes=131), mailbox=BOX)
    assert again is not None and again.kind == "alert"
