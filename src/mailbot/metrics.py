"""Metrics: OpenMetrics for Prometheus, served by `mailbot run` where `[metrics] listen` says.

The figures about cases and mail are read from the database at each scrape, by the same
rules `mailbot cases` and the digest use, so they match them exactly and survive a
restart; what only the running daemon knows (when each mailbox last answered, the last
scheduler pass, the sign-in token) comes from the daemon itself. prometheus-client is
imported only when the endpoint is wanted, and only in the daemon's main process (the
sending process is forked before it), to keep the daemon small.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from mailbot.categories import CATEGORIES
from mailbot.store import Case, InboundMessage, OutboxMessage, Problem, SentCopy

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from mailbot.app import App

log = logging.getLogger("mailbot.metrics")

# Outbox states shown (always, at 0 too, so an alert on them has a series to read):
# waiting to go, going, held up, and those the clerk must look at. Sent mail is counted
# by mailbot_messages_sent_total instead.
OUTBOX_STATES = ("pending", "sending", "paused", "uncertain", "failed", "bounced")


@dataclass
class Contact:
    """One server the daemon talks to, as it last found it."""

    protocol: str  # "imap" | "smtp"
    account: str  # the mailbox's address (IMAP), the SMTP user or host
    last_success: datetime | None
    connected: bool | None = None  # IMAP: connected now (None: not known)


@dataclass
class DaemonFigures:
    """What only the running daemon knows, read at each scrape."""

    contacts: Callable[[], list[Contact]] = list
    last_pass_at: datetime | None = None  # the scheduler's last pass (the app's clock)
    last_pass_seconds: float | None = None


@dataclass(frozen=True)
class Counts:
    """The figures the database holds, as at `today` in the council's timezone."""

    open_cases: dict[str, int]
    overdue_cases: dict[str, int]
    received: dict[str, int]  # by what was decided (new-case, own-mail, spam …)
    sent: dict[str, int]  # by kind of letter
    outbox: dict[str, int]
    copies_waiting: int
    copies_failed: int
    problems: dict[str, int]


def count(app: App) -> Counts:
    """Read every figure from the database in one short read: open and overdue as
    `mailbot cases` and the digest see them (open, due before today)."""
    zone = ZoneInfo(app.cfg.council.timezone)
    today = app.clock.now().astimezone(zone).date()
    categories = list(CATEGORIES)
    with app.engine.connect() as conn:
        open_cases = _grouped(
            conn, select(Case.category, func.count()).where(Case.status == "open")
        )
        overdue = _grouped(
            conn,
            select(Case.category, func.count()).where(
                Case.status == "open", Case.respond_by < today
            ),
        )
        received = _grouped(conn, select(InboundMessage.outcome, func.count()))
        sent = _grouped(
            conn, select(OutboxMessage.kind, func.count()).where(OutboxMessage.status == "sent")
        )
        outbox = _grouped(
            conn,
            select(OutboxMessage.status, func.count()).where(
                OutboxMessage.status.in_(OUTBOX_STATES)
            ),
        )
        copies = _grouped(conn, select(SentCopy.status, func.count()))
        problems = _grouped(
            conn, select(Problem.kind, func.count()).where(Problem.resolved_at.is_(None))
        )
    return Counts(
        open_cases={c: open_cases.get(c, 0) for c in categories} | open_cases,
        overdue_cases={c: overdue.get(c, 0) for c in categories} | overdue,
        received=received,
        sent=sent,
        outbox={s: outbox.get(s, 0) for s in OUTBOX_STATES},
        copies_waiting=copies.get("waiting", 0),
        copies_failed=copies.get("failed", 0),
        problems=problems,
    )


def _grouped(conn: Any, query: Any) -> dict[str, int]:
    column = query.selected_columns[0]
    return {str(key): int(n) for key, n in conn.execute(query.group_by(column))}


class Collector:
    """A prometheus-client collector: everything read afresh at each scrape."""

    def __init__(self, app: App, figures: DaemonFigures) -> None:
        self.app, self.figures = app, figures

    def describe(self) -> list:
        return []  # nothing registered ahead: the figures are read at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=list(labels))

        up = gauge("mailbot_database_up", "1 if the database answered this scrape")
        try:
            counts = count(self.app)
        except SQLAlchemyError as exc:
            log.warning("metrics: cannot read the database: %s", exc)
            counts = None
        up.add_metric([], 1 if counts is not None else 0)
        yield up
        if counts is not None:
            yield from _database_families(counts, gauge, CounterMetricFamily)
        yield from self._daemon_families(gauge)

    def _daemon_families(self, gauge: Callable[..., Any]) -> Iterator[Any]:
        last = gauge(
            "mailbot_last_contact_timestamp_seconds",
            "when each mail server last answered mailbot (IMAP: the mailbox was read; "
            "SMTP: it took mail or a sign-in), Unix time",
            ("protocol", "account"),
        )
        connected = gauge(
            "mailbot_mailbox_connected", "1 while the daemon is connected to the mailbox",
            ("account",),
        )  # fmt: skip
        for contact in self.figures.contacts():
            if contact.last_success is not None:
                last.add_metric(
                    [contact.protocol, contact.account], contact.last_success.timestamp()
                )
            if contact.connected is not None:
                connected.add_metric([contact.account], 1 if contact.connected else 0)
        yield last
        yield connected
        when = gauge(
            "mailbot_scheduler_last_pass_timestamp_seconds",
            "when the scheduler last looked for reminders, holding replies and escalations due",
        )
        took = gauge("mailbot_scheduler_last_pass_seconds", "how long the last scheduler pass took")
        if self.figures.last_pass_at is not None:
            when.add_metric([], self.figures.last_pass_at.timestamp())
        if self.figures.last_pass_seconds is not None:
            took.add_metric([], self.figures.last_pass_seconds)
        yield when
        yield took
        tokens = self.app.tokens
        if tokens is not None:
            expiry = gauge(
                "mailbot_oauth_token_expiry_timestamp_seconds",
                "when the sign-in token in use expires (it is renewed before then), Unix time",
                ("user",),
            )
            for user, expires_at in tokens.expiries().items():
                expiry.add_metric([user or "app"], expires_at.timestamp())
            failing = gauge(
                "mailbot_oauth_renewal_failing", "1 while renewing the sign-in token fails"
            )
            failing.add_metric([], 1 if tokens.failing_since is not None else 0)
            yield expiry
            yield failing


def _database_families(counts: Counts, gauge: Callable[..., Any], counter: type) -> Iterator[Any]:
    open_cases = gauge("mailbot_cases_open", "open cases, by category", ("category",))
    for category, n in sorted(counts.open_cases.items()):
        open_cases.add_metric([category], n)
    yield open_cases
    overdue = gauge(
        "mailbot_cases_overdue",
        "open cases whose response date has passed (as the digest counts them), by category",
        ("category",),
    )
    for category, n in sorted(counts.overdue_cases.items()):
        overdue.add_metric([category], n)
    yield overdue
    received = counter(
        "mailbot_messages_received",
        "messages read from the mailboxes, by what was decided about them",
        labels=["outcome"],
    )
    for outcome, n in sorted(counts.received.items()):
        received.add_metric([outcome], n)
    yield received
    sent = counter(
        "mailbot_messages_sent", "messages the SMTP server took, by kind", labels=["kind"]
    )
    for kind, n in sorted(counts.sent.items()):
        sent.add_metric([kind], n)
    yield sent
    outbox = gauge(
        "mailbot_outbox_messages",
        "outbox messages waiting (pending, paused), going (sending) or for the clerk "
        "(uncertain, failed, bounced)",
        ("status",),
    )
    for status, n in counts.outbox.items():
        outbox.add_metric([status], n)
    yield outbox
    copies = gauge("mailbot_sent_copies", "copies owed to the sent folder, by state", ("status",))
    copies.add_metric(["waiting"], counts.copies_waiting)
    copies.add_metric(["failed"], counts.copies_failed)
    yield copies
    problems = gauge(
        "mailbot_problems_open",
        "problems stopping mail until a person fixes them (as the digest lists them), by kind",
        ("kind",),
    )
    for kind, n in sorted(counts.problems.items()):
        problems.add_metric([kind], n)
    yield problems


@dataclass
class MetricsServer:
    """The endpoint, running in a thread of the daemon."""

    address: tuple[str, int]
    registry: CollectorRegistry
    _server: Any = field(default=None, repr=False)
    _thread: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def registry_for(app: App, figures: DaemonFigures) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(app, figures))  # type: ignore[arg-type]
    ProcessCollector(registry=registry)  # memory and CPU of the daemon's main process
    return registry


def serve(app: App, figures: DaemonFigures) -> MetricsServer | None:
    """Start the endpoint where `[metrics] listen` says (None: not configured). An
    address that cannot be had is an OSError naming the setting (exit 2)."""
    address = app.cfg.metrics.address
    if address is None:
        return None
    from prometheus_client import start_http_server

    for warning in app.cfg.metrics.warnings():
        log.warning("%s", warning)
    registry = registry_for(app, figures)
    host, port = address
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OSError(
            f"metrics.listen: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    log.info("metrics for Prometheus on http://%s:%d/metrics", host, port)
    return MetricsServer(address, registry, server, thread)
