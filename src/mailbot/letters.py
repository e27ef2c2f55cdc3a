"""Letters: each message mailbot writes — queued as template and recipient, composed when sent."""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email import message_from_bytes
from email.charset import QP, Charset
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr, quote
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailbot import shadow
from mailbot.addresses import for_the_wire, needs_smtputf8
from mailbot.calendar import calendar_for
from mailbot.categories import template_category
from mailbot.config import Config
from mailbot.held import CAPS, FORM_RULE, SPAM_RULE, HeldList, held_since
from mailbot.outbox import Letter, new_message_id
from mailbot.parse import clean_text
from mailbot.problems import HOLDS_MAIL, open_problems
from mailbot.screen import LOOP_HEADER
from mailbot.store import Case, OutboxMessage, OutboxStatus
from mailbot.templates import Rendered, TemplateProblem, case_context, long_date
from mailbot.unsent import unsent, waiting

if TYPE_CHECKING:
    from sqlalchemy import Row

    from mailbot.app import App

    # The sending process reads rows with plain statements; tests pass ORM objects.
    QueuedLetter = OutboxMessage | Row[Any]
    CaseLike = Case | Row[Any]

log = logging.getLogger("mailbot.letters")

DIGEST_LIMIT = 200  # cases listed in one digest; the counts cover the rest
HELD_LOOKBACK = timedelta(days=7)  # held messages the first digest lists


# "Re:" and its translations that mail clients put before a reply's subject.
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|antw)\s*:", re.IGNORECASE)


def subject_for(kind: str, case: Case) -> str:
    """The subject line of each kind of letter about a case (the reference is added later)."""
    about = case.subject or "your message"
    if kind in ("acknowledgement", "holding"):
        if not case.subject:
            return "Your message to the council"
        # A reply to a reply keeps one "Re:", as mail clients do, not "Re: Re:".
        return case.subject if _REPLY_PREFIX.match(case.subject) else f"Re: {case.subject}"
    if kind == "reminder":
        return f"Reminder: reply due {long_date(case.respond_by)}: {about}"
    if kind == "breach":
        return f"Response date missed: {about}"
    if kind == "welfare-alert":
        return f"Priority: welfare concern: {about}"
    return about


def header_text(value: str, limit: int) -> str:
    """Inbound text made safe for one of our headers: one line, capped, and with any
    "=?" broken up — Python's email package would otherwise decode an encoded word hidden
    in it (say, a resident's subject) into raw CR/LF and a header of the sender's choosing.
    """
    return clean_text(value, limit).replace("=?", "=\u2060?")


def compose(
    cfg: Config,
    *,
    to: str,
    to_name: str = "",
    subject: str,
    rendered: Rendered,
    audience: Literal["resident", "staff"],
    ref: str | None,
    now: datetime,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    message_id: str | None = None,
    sender: str | None = None,
) -> bytes:
    """A complete message from `sender` (by default the council's mailbox), as the SMTP
    server gets it. Anything taken from inbound mail is cleaned before it is a header.

    Built with the email package's classic (compat32) classes: the modern API parses
    every header we set back into a token tree and refolds it when written, four times
    the cost, for headers that are ours and already clean. Writing them still refuses a
    line break (email.header.Header), so nothing injected gets through either way.
    """
    council = cfg.council
    sender = sender or council.mailbox_address
    # "=_" cannot occur in a quoted-printable body, so the boundary needs no search of it.
    msg = MIMEMultipart("alternative", boundary=f"=_{secrets.token_hex(16)}")
    msg["From"] = formataddr((header_text(council.name, 100), sender), charset="utf-8")
    msg["Reply-To"] = sender
    # Letters outside ASCII before the @ can only be written as UTF-8 (RFC 6532), for a
    # server that offers SMTPUTF8; an international domain is written in ASCII instead.
    utf8 = needs_smtputf8(to)
    if utf8:
        name = header_text(to_name, 100)
        msg["To"] = f'"{quote(name)}" <{to}>' if name else to
    else:
        msg["To"] = formataddr((header_text(to_name, 100), for_the_wire(to)), charset="utf-8")
    subject = header_text(subject, 150) or "Your message"
    if ref and ref not in subject:
        subject = f"{subject} [Ref: {ref}]"
    msg["Subject"] = subject  # encoded (RFC 2047) only if it is not plain ASCII
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id or new_message_id(sender)
    msg[LOOP_HEADER] = sender
    if audience == "resident":
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to
            msg["References"] = " ".join((*references[-10:], in_reply_to))
    else:
        msg["Auto-Submitted"] = "auto-generated"
    for body, subtype in ((rendered.text, "plain"), (rendered.html, "html")):
        part = MIMEText(body, subtype, _UTF8)
        del part["MIME-Version"]  # said once, at the top
        msg.attach(part)
    return msg.as_bytes(policy=_WIRE_UTF8 if utf8 else _WIRE)


# Quoted-printable: text a person can still read in the raw message, unlike base64.
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


class _Wire(Compat32):
    """compat32 on the wire, writing a short one-line plain-ASCII header as it stands.

    The Header class would fold such a header back to itself, at a cost ten times the
    rest of writing it; anything longer, non-ASCII or holding a line break still goes
    through it (and a line break is still refused there).
    """

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + len(value) + 2 <= (self.max_line_length or 78)
            and value.splitlines() == [value]  # no line break, as str.splitlines sees one
            and value == value.strip()
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


_WIRE = _Wire(linesep="\r\n", max_line_length=78)


class _WireUTF8(_Wire):
    """For a message to an address that needs SMTPUTF8: headers outside ASCII are written
    as UTF-8 (RFC 6532), not as encoded words, which an address cannot be."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if isinstance(value, str) and not value.isascii():
            if value.splitlines() != [value]:
                raise ValueError(f"line break in the {name} header")
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)

    def fold_binary(self, name: str, value: Any) -> bytes:
        return self._fold(name, value, sanitize=False).encode("utf-8", "surrogateescape")


_WIRE_UTF8 = _WireUTF8(linesep="\r\n", max_line_length=78)


def render(app: App, session: Session, row: QueuedLetter, case: CaseLike | None = None) -> bytes:
    """Compose a queued letter from the case as it stands now, with its recorded Message-ID.

    `case` is the row's case when the caller has read it already.
    """
    return render_letter(app, session, row, case).raw


@dataclass(frozen=True)
class Written:
    """A letter written into a message: its bytes, the template version it was written
    from, and what was wrong with the template if the built-in wording had to stand in
    (the caller tells the clerk: writing a letter sends nothing)."""

    raw: bytes
    version: str
    template: str
    problem: str | None = None


def render_letter(
    app: App, session: Session, row: QueuedLetter, case: CaseLike | None = None
) -> Written:
    """As `render`, with the template version and any template problem."""
    letter = Letter.from_json(row.letter or {})
    now = app.clock.now()
    if case is None and row.case_id:
        case = session.get(Case, row.case_id)
    if letter.template == "digest":
        today = now.astimezone(ZoneInfo(app.policy.timezone)).date()
        context = digest_context(app, session, today)
    elif case is not None:
        context = case_context(app.cfg, app.policy, case, now, **letter.extra)
    else:
        context = {
            "council": council_context(app.cfg),
            "case": {"ref": ""},
            "officer": None,
            **letter.extra,
        }
    name = letter.template
    if letter.fallback and name not in app.templates.names():
        name = letter.fallback
    if letter.audience == "resident" and case is not None and app.policy.language == "cy-en":
        rendered, problem = _in_welsh_and_english(app, name, context, case, now, letter.extra)
    else:
        staff = letter.audience == "staff"
        rendered, problem = app.templates.render_safe(name, context, staff=staff)
    if problem:
        log.error("template problem, used the built-in wording: %s", problem)
    raw = compose(
        app.cfg,
        to=row.recipient,
        to_name=letter.to_name,
        subject=letter.subject,
        rendered=rendered,
        audience=letter.audience,
        ref=case.ref if case else None,
        now=now,
        in_reply_to=letter.in_reply_to,
        references=letter.references,
        message_id=row.message_id,
        sender=case.mailbox if case else None,  # the mailbox the case came in to
    )
    return Written(raw, rendered.version, name, problem)


def _in_welsh_and_english(
    app: App,
    name: str,
    context: dict[str, Any],
    case: CaseLike,
    now: datetime,
    extra: dict[str, Any],
) -> tuple[Rendered, str | None]:
    """A letter to a resident of a council writing in Welsh and English (welsh.py)."""
    from mailbot import welsh

    cy = welsh.welsh_context(app.cfg, app.policy, case, now, **extra)
    mode = welsh.mode_for(app.policy, case)
    rendered, problems = welsh.render(app.templates, name, mode, context, cy)
    return rendered, "; ".join(problems) or None


def council_context(cfg: Config) -> dict[str, str]:
    return {"name": cfg.council.name, "email": cfg.council.mailbox_address}


def digest_context(app: App, session: Session, today: date) -> dict[str, Any]:
    """Open cases for the clerk: overdue first, then soonest due, with working days left."""
    policy = app.policy
    cases = session.scalars(
        select(Case)
        .where(Case.status == "open")
        .order_by(Case.respond_by, Case.id)
        .limit(DIGEST_LIMIT)
    ).all()
    rows = []
    for case in cases:
        calendar = calendar_for(policy, case.category)
        if case.respond_by < today:
            left = -calendar.working_days_between(case.respond_by, today)
        else:
            left = calendar.working_days_between(today, case.respond_by)
        rows.append(
            {
                "ref": case.ref,
                "category": case.category,
                "officer": case.officer_name or "unassigned",
                "respond_by": long_date(case.respond_by),
                "days_left": left,
                "subject": case.subject,
                "clock_stopped": case.clock_stopped,
                "triage": case.triage,
            }
        )
    rows.sort(key=lambda r: r["days_left"])  # overdue first
    total = session.scalar(select(func.count()).select_from(Case).where(Case.status == "open"))
    overdue = session.scalar(
        select(func.count()).select_from(Case).where(Case.status == "open", Case.respond_by < today)
    )
    triage = session.scalar(
        select(func.count()).select_from(Case).where(Case.status == "open", Case.triage)
    )
    # What was held since the last digest (the week before the first), and is held still.
    last = session.scalar(
        select(func.max(OutboxMessage.created_at)).where(
            OutboxMessage.kind == "digest", OutboxMessage.key < f"digest:{today}"
        )
    )
    since = last or app.clock.now() - HELD_LOOKBACK
    held = held_since(session, app.cfg, since, DIGEST_LIMIT)
    zone = ZoneInfo(policy.timezone)
    # What did not go, until the clerk resends or dismisses it; what stops mail now.
    messages, total_unsent = unsent(session, limit=DIGEST_LIMIT)
    kept, total_kept = kept_in_shadow(session, since, DIGEST_LIMIT)
    return {
        "council": council_context(app.cfg),
        "today": long_date(today),
        "cases": rows,
        "total": total,
        "overdue": overdue,
        "triage": triage,
        "held_spam": _held_rows(held[SPAM_RULE], policy.timezone),
        "held_forms": _held_rows(held[FORM_RULE], policy.timezone),
        "held_caps": _held_rows(held[CAPS], policy.timezone),
        "problems": [
            {
                "since": f"{p.since.astimezone(zone):%a %d %b %H:%M}",
                "detail": p.detail,
                "holds_mail": p.kind in HOLDS_MAIL,
            }
            for p in open_problems(session)
        ],
        "waiting": waiting(session),
        "unsent": {
            "total": total_unsent,
            "messages": [
                {
                    "id": m.id,
                    "status": m.status,
                    "kind": m.kind,
                    "recipient": m.recipient,
                    "case": m.case_ref or "-",
                    "queued": m.created_at.astimezone(zone).strftime("%a %d %b %H:%M"),
                    "reason": clean_text(m.reason, 200),
                }
                for m in messages
            ],
        },
        "shadow": {
            "mode": shadow.mode_of(session).shadow,
            "total": total_kept,
            "messages": [
                {
                    "at": row.next_attempt_at.astimezone(zone).strftime("%a %d %b %H:%M"),
                    "kind": row.kind,
                    "recipient": row.recipient,
                    "case": ref or "-",
                    "reason": row.last_error,
                }
                for row, ref in kept
            ],
        },
        "officer": None,
        "case": {"ref": ""},
    }


def kept_in_shadow(
    session: Session, since: datetime, limit: int
) -> tuple[list[tuple[OutboxMessage, str | None]], int]:
    """The letters recorded and not sent since `since` (shadow mode, or due during the
    trial), in the order they would have gone, each with its case's reference; and how
    many there are in all."""
    where = (OutboxMessage.status == OutboxStatus.SHADOW, OutboxMessage.created_at > since)
    rows = session.execute(
        select(OutboxMessage, Case.ref)
        .outerjoin(Case, Case.id == OutboxMessage.case_id)
        .where(*where)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    ).all()
    total = session.scalar(select(func.count()).select_from(OutboxMessage).where(*where))
    return [(row, ref) for row, ref in rows], total or 0


def _held_rows(held: HeldList, timezone: str) -> dict[str, Any]:
    zone = ZoneInfo(timezone)
    return {
        "total": held.total,
        "messages": [
            {
                "name": m.name,
                "received": m.received_at.astimezone(zone).strftime("%a %d %b %H:%M"),
                "sender": m.sender,
                "reason": m.reason,
            }
            for m in held.messages
        ],
    }


# --- for the clerk: check every template, preview one message --------------------------

SAMPLE_EXTRA: dict[str, dict[str, Any]] = {
    "acknowledgement-triage": {"officer": None},  # as pipeline.acknowledge sends it
    "reminder": {"working_days_left": 3},
    "holding": {"new_date": "Friday 15 January 2027", "reason": "we are waiting for a contractor"},
    "welfare-alert": {"welfare_reasons": ['welfare: phrase "lives alone" in body']},
    "clarification": {"question": "Which financial years do you mean?"},
    "extension": {
        "old_date": "Friday 18 December 2026",
        "reason": "We are considering the exemption for commercial interests (section 43(2)).",
    },
    "fees": {"fee": "£25.00", "pay_by": "Thursday 18 February 2027"},
    "identity": {"needed": None},
    "mailbot-health": {
        "text": "mailbot has not been able to check enquiries@ since 09:12 today.",
    },
    "command-confirmation": {
        "results": [
            {
                "line": "#extend 10",
                "ok": True,
                "detail": "response date now Friday 15 January 2027",
            },
            {"line": "#outcome maybe", "ok": False, "detail": "give one of: upheld, ..."},
        ]
    },
    "mail-refused": {
        "sender": "sam.patel@council.example.gov.uk",
        "reason": "Microsoft 365 recorded it as sent from outside the council's tenant",
        "asked": ["#close"],
        "subject": "RE: Spending on consultants",
        "mode": "microsoft365",
    },
    "template-problem": {
        "template_name": "acknowledgement-foi",
        "problem": "acknowledgement-foi.txt:3: 'resident' has no attribute 'nmae'",
    },
}


def sample_case(category: str = "foi") -> Case:
    """A made-up case for rendering templates without touching the database."""
    received = datetime(2026, 11, 20, 16, 45, tzinfo=ZoneInfo("Europe/London"))
    return Case(
        id=0,
        ref="FOI-2026-00042" if category == "foi" else "ENQ-2026-00042",
        category=category,
        stage=1,
        status="open",
        priority="normal",
        resident_email="jane.doe@example.com",
        resident_name="Jane Doe",
        subject="Spending on consultants",
        officer_email=None,
        officer_name=None,
        received_at=received,
        acknowledge_by=date(2026, 11, 27),
        respond_by=date(2026, 12, 18),
        reasons=[],
    )


def sample_context(app: App, name: str, case: Case | None = None) -> dict[str, Any]:
    now = app.clock.now()
    if name == "digest":
        return {
            "council": council_context(app.cfg),
            "today": long_date(now.date()),
            "cases": [
                {
                    "ref": "ENQ-2026-00042",
                    "category": "enquiry",
                    "officer": "Sam Patel",
                    "respond_by": "Friday 18 December 2026",
                    "days_left": -2,
                    "subject": "Bins",
                    "clock_stopped": False,
                    "triage": True,
                }
            ],
            "total": 1,
            "overdue": 1,
            "triage": 1,
            "held_spam": {
                "total": 1,
                "messages": [
                    {
                        "name": "4711",
                        "received": "Tue 03 Nov 09:30",
                        "sender": "win.big@example.net",
                        "reason": "spam: marked as spam, phishing or forged by the council's mail "
                        "servers (X-Spam-Flag: YES)",
                    }
                ],
            },
            "held_forms": {"total": 0, "messages": []},
            "held_caps": {"total": 0, "messages": []},
            "problems": [
                {
                    "since": "Tue 03 Nov 09:12",
                    "detail": "the SMTP server refuses to send mail from foi@council.example."
                    "gov.uk: 550 5.7.60 SMTP; Client does not have permissions to send as "
                    "this sender",
                    "holds_mail": True,
                }
            ],
            "waiting": 4,
            "unsent": {
                "total": 1,
                "messages": [
                    {
                        "id": 812,
                        "status": "bounced",
                        "kind": "acknowledgement",
                        "recipient": "jane.doe@exmaple.com",
                        "case": "ENQ-2026-00042",
                        "queued": "Tue 03 Nov 09:31",
                        "reason": "bounced: 5.1.2 (host exmaple.com not found)",
                    }
                ],
            },
            "shadow": {
                "mode": True,
                "total": 1,
                "messages": [
                    {
                        "at": "Tue 03 Nov 09:30",
                        "kind": "acknowledgement",
                        "recipient": "jane.doe@example.com",
                        "case": "ENQ-2026-00042",
                        "reason": "shadow mode: recorded, not sent",
                    }
                ],
            },
            "officer": None,
            "case": {"ref": ""},
        }
    category = template_category(name)[1] or "foi"
    case = case or sample_case(category)
    if case.officer_email is None and app.cfg.officers:
        case.officer_email, case.officer_name = app.cfg.officers[0].email, app.cfg.officers[0].name
    welsh = name.startswith(WELSH_FOLDER)
    base = name.removeprefix(WELSH_FOLDER).removesuffix("-" + category)
    if base == "stage-change" and case.stage == 1 and app.policy.final_stage(category) > 1:
        case.stage = 2  # the letter of a move to stage 2 (a review, for foi and eir)
    extra = SAMPLE_EXTRA.get(base, {})
    if welsh:
        from mailbot.welsh import welsh_context

        return welsh_context(app.cfg, app.policy, case, now, **extra)
    return case_context(app.cfg, app.policy, case, now, **extra)


# The clerk's and the built-in Welsh templates live in a folder of this name (cy/holding.txt).
WELSH_FOLDER = "cy/"
# Templates written to residents (the rest go to staff), without their category suffix.
RESIDENT_LETTERS = frozenset(
    {
        "acknowledgement",
        "acknowledgement-triage",
        "holding",
        "clarification",
        "stage-change",
        "extension",
        "fees",
        "identity",
    }
)


def check_all(app: App) -> list[str]:
    """Render every template with sample data in the sandbox; the problems, one line each."""
    problems = []
    names = app.templates.names()
    for name in sorted(names):
        if name.rsplit("/", 1)[-1].startswith("_"):
            continue
        try:
            app.templates.render(name, sample_context(app, name))
        except TemplateProblem as exc:
            problems.append(str(exc))
    if app.policy.language == "cy-en":
        problems += _check_bilingual(app, names)
    return problems


def _check_bilingual(app: App, names: set[str]) -> list[str]:
    """A council writing in Welsh and English: every letter to residents has its Welsh
    version, and renders as the bilingual message it sends."""
    from mailbot import welsh

    problems = []
    for name in sorted(names):
        general, category = template_category(name)
        category = category or "foi"
        if general not in RESIDENT_LETTERS or name.startswith(WELSH_FOLDER):
            continue
        case = sample_case(category)
        english = sample_context(app, name, case)
        cy = sample_context(app, WELSH_FOLDER + name, case)
        _, found = welsh.render(app.templates, name, "cy-en", english, cy)
        problems += found
    return problems


def preview(app: App, name: str, ref: str | None = None) -> str:
    """The exact message (headers and text) a template would produce."""
    message = preview_message(app, name, ref)
    text = message.get_body(("plain",))
    headers = "".join(f"{k}: {v}\n" for k, v in message.items() if k != "Content-Type")
    return headers + "\n" + (text.get_content() if text is not None else "")


def preview_message(app: App, name: str, ref: str | None = None) -> EmailMessage:
    """The message a template would produce, text and HTML parts, as its reader gets it:
    with sample data, or about the case `ref` as it stands now."""
    names = app.templates.names()
    general, category = template_category(name)
    if name not in names and general not in names:
        raise TemplateProblem(f"{name}.txt: no such template")
    case = sample_case(category or "foi")
    if ref:
        from mailbot.store import case_by_ref

        with app.sessions() as session:
            found = case_by_ref(session, ref)
            if found is None:
                raise TemplateProblem(f"no case {ref}")
            session.expunge(found)
            case = found
    context = sample_context(app, name, case)
    staff = general not in RESIDENT_LETTERS
    chosen = name if name in names else general
    if not staff and app.policy.language == "cy-en" and not name.startswith(WELSH_FOLDER):
        # As the resident would get it: in Welsh, English or both (welsh.py).
        from mailbot import welsh

        cy = sample_context(app, WELSH_FOLDER + name, case)
        mode = welsh.mode_for(app.policy, case)
        rendered, problems = welsh.render(app.templates, chosen, mode, context, cy)
        if problems:
            raise TemplateProblem(problems[0])
    else:
        rendered = app.templates.render(chosen, context, staff=staff)
    officer = context.get("officer") or {}
    clerk = next(iter(app.cfg.officers_with("clerk")), None)
    staff_to = officer.get("email") or (clerk.email if clerk else app.cfg.council.mailbox_address)
    raw = compose(
        app.cfg,
        to=staff_to if staff else case.resident_email,
        to_name="" if staff else case.resident_name,
        subject=subject_for(general, case) if general != "digest" else "Open cases",
        rendered=rendered,
        audience="staff" if staff else "resident",
        ref=case.ref if general != "digest" else None,
        now=app.clock.now(),
        in_reply_to=None if staff else case.first_message_id,
        sender=case.mailbox,
    )
    message = message_from_bytes(raw, policy=default_policy)  # headers shown decoded
    assert isinstance(message, EmailMessage)
    return message
