"""The queue: letters waiting to be written and sent, each queued once by its key.

A Letter says what to send (which template, to whom, about what); it is written into a
message only when it is sent, so the message says what is true then. `queue` adds many
in one statement and skips any key queued before, so asking twice never sends twice.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import make_msgid
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    LargeBinary,
    String,
    bindparam,
    cast,
    column,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.sql.selectable import TableValuedAlias

from mailbot import shadow
from mailbot.addresses import domain_of, recipient_key
from mailbot.store import EventKind, OutboxMessage, UTCDateTime, add_events_by_id

log = logging.getLogger("mailbot.outbox")


@dataclass(frozen=True, slots=True)  # slots: a scheduler pass holds thousands
class Letter:
    """A message to send: which template, to whom, about what. Rendered at sending time."""

    kind: str  # acknowledgement | reminder | holding | breach | digest | welfare-alert
    template: str
    recipient: str
    subject: str
    audience: Literal["resident", "staff"]
    to_name: str = ""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    fallback: str | None = None  # the general template when no specific one exists

    def as_json(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict, and only what differs from the defaults:
        # a busy scheduler pass writes thousands.
        data: dict[str, Any] = {
            "kind": self.kind,
            "template": self.template,
            "recipient": self.recipient,
            "subject": self.subject,
            "audience": self.audience,
        }
        if self.to_name:
            data["to_name"] = self.to_name
        if self.in_reply_to:
            data["in_reply_to"] = self.in_reply_to
        if self.references:
            data["references"] = list(self.references)
        if self.extra:
            data["extra"] = dict(self.extra)
        if self.fallback:
            data["fallback"] = self.fallback
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Letter:
        return cls(**{**data, "references": tuple(data.get("references", ()))})


def new_message_id(mailbox_address: str) -> str:
    return make_msgid(domain=mailbox_address.rsplit("@", 1)[1])


def queue(
    session: Session,
    items: list[tuple[str, Letter, int | None]],
    *,
    mailbox_address: str,
    now: datetime,
    send_at: datetime | None = None,
    due_at: datetime | None = None,
) -> set[str]:
    """Queue letters by key in one statement; a key queued before is skipped, so each
    thing happens once however often it is asked for. Returns the keys newly queued.

    `due_at` is when the letters fell due (default `now`): in shadow mode, or when it
    fell before mailbot went live after a trial, a letter is recorded and never sent
    (shadow.decide), with a line in its case's history.
    """
    if not items:
        return set()
    mode = shadow.mode_of(session)
    due = due_at or now
    decisions = [shadow.decide(letter.kind, due, mode) for _, letter, _ in items]
    rows = [
        (
            key,
            new_message_id(mailbox_address),
            case_id,
            letter.kind,
            letter.recipient,
            letter.as_json(),
            recipient_key(letter.recipient),
            domain_of(letter.recipient),
            decision.status.value,
            decision.reason,
        )
        for (key, letter, case_id), decision in zip(items, decisions, strict=True)
    ]
    statement = _queue_statement(session.get_bind().dialect.name)
    params = {"rows": json.dumps(rows), "now": now, "send_at": send_at or now}
    queued = set(session.execute(statement, params).scalars().all())
    kept = [
        (
            case_id,
            send_at or now,
            EventKind.WOULD_HAVE_SENT,
            shadow.would_have_sent(letter.kind, letter.recipient, decision),
        )
        for (key, letter, case_id), decision in zip(items, decisions, strict=True)
        if not decision.sent and key in queued and case_id is not None
    ]
    add_events_by_id(session, kept)
    return queued


@functools.cache
def _queue_statement(dialect: str) -> ReturningInsert[tuple[str]]:
    """INSERT … SELECT from the rows sent as one JSON array, skipping keys already queued."""
    table = OutboxMessage.__table__
    row = json_rows(dialect).c.value
    # Each letter is an object inside the array; read as text (->> on PostgreSQL,
    # json_extract on SQLite) it is stored as that object's JSON.
    letter = row[5].as_string()
    if dialect == "postgresql":
        letter = cast(letter, JSON)
    values = {
        "key": row[0].as_string(),
        "message_id": row[1].as_string(),
        "case_id": row[2].as_integer(),
        "kind": row[3].as_string(),
        "recipient": row[4].as_string(),
        "recipient_key": row[6].as_string(),
        "recipient_domain": row[7].as_string(),
        "letter": letter,
        "raw": literal(b"", LargeBinary),  # written when sent
        "status": row[8].as_string(),  # pending, or shadow (shadow.decide)
        "attempts": literal(0),
        "next_attempt_at": bindparam("send_at", type_=UTCDateTime),
        "last_error": row[9].as_string(),  # why a shadow letter is not sent
        "created_at": bindparam("now", type_=UTCDateTime),
    }
    # WHERE true: SQLite would read ON CONFLICT straight after a FROM as part of a join.
    letters = select(*values.values()).where(true())
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(table)
        .from_select(list(values), letters, include_defaults=False)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(table.c.key)
    )


def json_rows(dialect: str) -> TableValuedAlias:
    """The elements of the JSON array bound as `rows`, as a table the database reads itself.

    Thousands of rows go over as one parameter: no bind processing row by row in Python,
    and no statement with thousands of placeholders for the driver to parse.
    """
    rows = bindparam("rows", type_=String)
    if dialect == "postgresql":
        # jsonb: parsed once, where a json value is parsed again for every field read
        elements = func.jsonb_array_elements(cast(rows, JSONB))
        return elements.table_valued(column("value", JSONB)).alias("item")
    return func.json_each(rows).table_valued(column("value", JSON)).alias("item")
