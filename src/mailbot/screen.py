"""Screen: decide whether a message may be acknowledged (SPEC §6), as small named rules."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailbot.parse import ParsedMessage, clean_text
from mailbot.reasons import Reason
from mailbot.trust import dmarc_failure

if TYPE_CHECKING:
    from mailbot.config import CommandsConfig
    from mailbot.forms import FormSubmission

LOOP_HEADER = "X-Mailbot-Loop"

# SPEC §6 "sender local part like ...": the robot names exactly (before any +tag), the
# bounce*/owner-*/*-request patterns as written, and no-reply words wherever they stand as
# a whole word ("github-noreply", "noreply+x"), but not inside a name ("noreplyjones").
_ROBOT_LOCAL = re.compile(r"^(?:mailer-daemon|postmaster|bounce.*|owner-.+|.+-request)$")
_NO_REPLY_WORD = re.compile(r"(?:^|[._+-])(?:no[-_]?reply|do[-_]?not[-_]?reply)(?:$|[._+-])")


@dataclass(frozen=True)
class ScreenContext:
    """What the rules need to know beyond the message itself."""

    own_addresses: frozenset[str]  # the council mailboxes and every officer
    sent_to_sender_last_day: int = 0  # acknowledgements this sender had in the last 24 hours
    cap_per_day: int = 3
    # Acknowledgements to the sender's domain in the last 24 hours (None: the domain is a
    # large provider, which the per-domain cap leaves alone), and that cap.
    sent_to_domain_last_day: int | None = None
    cap_per_domain_per_day: int = 20
    scl_threshold: int = 5  # [spam] scl_threshold: Exchange's spam confidence level held
    # [commands]: where the council's border server records its DMARC verdicts
    commands: CommandsConfig | None = None
    # The web form's reading of the message, when its sender is a configured form: the
    # rules then judge the resident it names, not the form's own no-reply sender.
    form: FormSubmission | None = None


@dataclass(frozen=True)
class Rule:
    """One reason not to acknowledge; `description` ends up verbatim in the case record."""

    name: str
    description: str
    check: Callable[[ParsedMessage, ScreenContext], str | None]


def _auto_submitted(msg: ParsedMessage, _: ScreenContext) -> str | None:
    value = msg.header("auto-submitted")
    if value is None:
        return None
    # The keyword, without RFC 3834 parameters (";") or RFC 5322 comments ("(...)").
    keyword = re.split(r"[\s;(]", value.strip().lower(), maxsplit=1)[0]
    return None if keyword == "no" else f"Auto-Submitted: {value}"


def _precedence(msg: ParsedMessage, _: ScreenContext) -> str | None:
    for name in ("precedence", "x-precedence"):
        words = re.split(r"[\s;,]+", (msg.header(name) or "").strip().lower())
        if words[0] in {"bulk", "list", "junk", "auto_reply"}:  # "bulk; comment" is bulk
            return f"{name}: {words[0]}"
    return None


def _suppress_header(msg: ParsedMessage, _: ScreenContext) -> str | None:
    value = msg.header("x-auto-response-suppress") or ""
    words = {w.lower() for w in re.split(r"[\s,;]+", value)}
    if words & {"all", "oof", "autoreply"}:
        return f"X-Auto-Response-Suppress: {value}"
    return None


def _autoreply_headers(msg: ParsedMessage, _: ScreenContext) -> str | None:
    found = msg.header_names() & {"x-autoreply", "x-autorespond", "x-autoresponder"}
    return f"header {sorted(found)[0]}" if found else None


def _list_headers(msg: ParsedMessage, _: ScreenContext) -> str | None:
    found = sorted(name for name in msg.header_names() if name.startswith("list-"))
    return f"header {found[0]}" if found else None


def _loop_headers(msg: ParsedMessage, _: ScreenContext) -> str | None:
    found = msg.header_names() & {"x-loop", LOOP_HEADER.lower()}
    return f"header {sorted(found)[0]}" if found else None


def _null_return_path(msg: ParsedMessage, _: ScreenContext) -> str | None:
    value = msg.header("return-path")
    if value is not None and value.replace(" ", "") == "<>":
        return "Return-Path: <>"
    return None


def _report(msg: ParsedMessage, _: ScreenContext) -> str | None:
    return msg.content_type if msg.content_type == "multipart/report" else None


def is_machine_address(addr: str) -> bool:
    """A robot's address by its local part (SPEC §6)."""
    local = addr.rpartition("@")[0].lower()
    return bool(_ROBOT_LOCAL.match(local.split("+")[0]) or _NO_REPLY_WORD.search(local))


def _machine_sender(msg: ParsedMessage, _: ScreenContext) -> str | None:
    if msg.from_addr and is_machine_address(msg.from_addr):
        return f"sender {msg.from_addr}"
    # The acknowledgement would go to Reply-To, so a robot there is no better.
    if msg.reply_to and is_machine_address(msg.reply_to):
        return f"reply-to {msg.reply_to}"
    return None


_MACHINE_NAME = re.compile(r"^(mail delivery (subsystem|system)|mailer-daemon|postmaster)$", re.I)
# Phrases a resident might also start a subject with ("Out of office hours noise",
# "Delivery failure of my bin") count only when the subject is just that or a prefix ("...:").
_AUTO_SUBJECT = re.compile(
    r"^(?:(?:auto(?:matic)?[ -]?reply|out of (?:the )?office(?: auto ?reply)?|undeliverable|"
    r"returned mail|delivery failure)\s*(?:$|:|\()"
    r"|undelivered mail returned to sender|delivery status notification|mail delivery failed)",
    re.I,
)
# Vendor headers that mark vacation and system replies without the RFC 3834 header.
_VENDOR_AUTO = {
    "x-apple-action": "vacation",
    "x-ms-exchange-generated-message-source": "",
    "x-autogenerated": "",
    "x-failed-recipients": "",
}


def _machine_name(msg: ParsedMessage, _: ScreenContext) -> str | None:
    return f"sender name {msg.from_name!r}" if _MACHINE_NAME.match(msg.from_name.strip()) else None


def _auto_subject(msg: ParsedMessage, _: ScreenContext) -> str | None:
    return f"subject {msg.subject[:60]!r}" if _AUTO_SUBJECT.match(msg.subject) else None


def _vendor_auto(msg: ParsedMessage, _: ScreenContext) -> str | None:
    for name, value in _VENDOR_AUTO.items():
        found = msg.header(name)
        if found is not None and value in found.lower():
            return f"header {name}"
    return None


def _own_address(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    own = {a.lower() for a in ctx.own_addresses}
    if msg.from_addr in own:
        return f"sender {msg.from_addr}"
    if msg.reply_to in own:  # we would be acknowledging ourselves
        return f"reply-to {msg.reply_to}"
    return None


def _no_sender(msg: ParsedMessage, _: ScreenContext) -> str | None:
    return None if msg.from_addr else "no valid From address"


# --- upstream spam verdicts ---------------------------------------------------------------
#
# The council's own mail servers may have judged a message already; mailbot obeys and
# never scores spam itself. A sender can write any of these headers too, so only a verdict
# of spam counts: obeying a forged "spam" only holds the forger's own message, while a
# "not spam" (X-Spam-Flag: NO, SCL -1) is never read as overriding one. Every copy of a
# header is read, so a forged copy cannot hide the one the server added.

# Exchange Online's X-Forefront-Antispam-Report (and X-Microsoft-Antispam) fields, as
# Microsoft documents them ("Anti-spam message headers in Microsoft 365").
_EXCHANGE_SPAM_SFV = frozenset(
    {
        "SPM",  # the spam filter marked it as spam
        "SKS",  # marked as spam before filtering, by a mail flow rule
        "SKB",  # the sender is on the anti-spam policy's blocked list
        "BLK",  # the sender is on the mailbox's Blocked Senders list
    }
)
# Not spam, filtering skipped, or released from quarantine: no verdict of spam.
_EXCHANGE_OTHER_SFV = frozenset({"NSPM", "SFE", "SKA", "SKI", "SKN", "SKQ"})
_EXCHANGE_SPAM_CAT = {
    "SPM": "spam",
    "HSPM": "high confidence spam",
    "OSPM": "outbound spam",
    "PHSH": "phishing",
    "HPHSH": "high confidence phishing",
    "HPHISH": "high confidence phishing",
    "SPOOF": "spoofing",
    "UIMP": "user impersonation",
    "DIMP": "domain impersonation",
    "GIMP": "mailbox intelligence impersonation",
    "BIMP": "brand impersonation",
    "INTOS": "intra-organisation phishing",
    "MALW": "malware",
    "AMP": "anti-malware",
    "SAP": "Safe Attachments (malware)",
    "FTBP": "blocked attachment type",
}
# BULK is a bulk-mail grade, not a verdict of spam; NONE is a clean message.
_EXCHANGE_OTHER_CAT = frozenset({"BULK", "NONE"})
# Rspamd's actions (its cfg_utils action names). Its own X-Spam-Status says "Yes" for every
# action but "no action" ("accept" is another name for it) and "greylist"; so does mailbot.
_RSPAMD_NOT_SPAM = frozenset({"no action", "accept", "greylist"})
_RSPAMD_SPAM = frozenset(
    {"add header", "rewrite subject", "soft reject", "reject", "quarantine", "discard"}
)


@dataclass(frozen=True)
class SpamVerdict:
    """What the council's mail servers said about a message, read from its headers."""

    held: tuple[str, ...] = ()  # each header that says spam or phishing, as the clerk reads it
    unreadable: tuple[str, ...] = ()  # values that are no verdict we know (logged, not obeyed)


def spam_verdict(msg: ParsedMessage, scl_threshold: int = 5) -> SpamVerdict:
    """The spam and phishing verdicts in a message's headers (SPEC §6), and any verdict
    header whose value could not be read."""
    held: list[str] = []
    unreadable: list[str] = []

    def level(name: str, value: str) -> int | None:
        """A spam confidence level at or over the threshold; an unreadable one is noted."""
        try:
            scl = int(value.strip())
        except ValueError:
            scl = None
        if scl is None or not -1 <= scl <= 9:
            unreadable.append(f"{name}: {value!r} is not a spam confidence level (-1 to 9)")
            return None
        return scl if scl >= scl_threshold else None

    for value in _values(msg, "x-ms-exchange-organization-scl"):
        if (scl := level("X-MS-Exchange-Organization-SCL", value)) is not None:
            held.append(f"X-MS-Exchange-Organization-SCL: {scl}")
    for name in ("X-Forefront-Antispam-Report", "X-Microsoft-Antispam"):
        for value in _values(msg, name):
            found = []
            for key, field in _fields(value):
                if key == "SCL":
                    if (scl := level(f"{name} SCL", field)) is not None:
                        found.append(f"SCL:{scl}")
                elif key == "SFV" and field in _EXCHANGE_SPAM_SFV:
                    found.append(f"SFV:{field}")
                elif key == "SFV" and field not in _EXCHANGE_OTHER_SFV:
                    unreadable.append(f"{name}: unknown verdict SFV:{field}")
                elif key == "CAT":
                    for category in filter(None, (c.strip() for c in field.split(","))):
                        if category in _EXCHANGE_SPAM_CAT:
                            found.append(f"CAT:{category} ({_EXCHANGE_SPAM_CAT[category]})")
                        elif category not in _EXCHANGE_OTHER_CAT:
                            unreadable.append(f"{name}: unknown category CAT:{category}")
            if found:
                held.append(f"{name}: {', '.join(found)}")
    for name in (
        "X-Spam-Flag",  # SpamAssassin: YES or NO
        "X-Spam-Status",  # SpamAssassin and Rspamd: "Yes, score=9.4 required=5.0 ..."
        "X-Spam",  # Rspamd's milter: Yes for its "add header" action
    ):
        for value in _values(msg, name):
            word = (value.replace(",", " ").split() or [""])[0].lower()
            if word == "yes":
                held.append(f"{name}: {value.strip()}")
            elif word != "no":
                unreadable.append(f"{name}: {value.strip()!r} is neither Yes nor No")
    for value in _values(msg, "x-rspamd-action"):
        action = " ".join(value.replace("_", " ").lower().split())
        if action in _RSPAMD_SPAM:
            held.append(f"X-Rspamd-Action: {action}")
        elif action not in _RSPAMD_NOT_SPAM:
            unreadable.append(f"X-Rspamd-Action: {value!r} is not an action Rspamd takes")
    return SpamVerdict(tuple(dict.fromkeys(held)), tuple(dict.fromkeys(unreadable)))


def _values(msg: ParsedMessage, name: str) -> Iterator[str]:
    """Every value of a header (a sender may add a copy of their own)."""
    name = name.lower()
    return (value for key, value in msg.headers if key == name)


def _fields(value: str) -> Iterator[tuple[str, str]]:
    """'KEY:value;KEY:value' as (KEY, VALUE) pairs, upper-cased."""
    for part in value.split(";"):
        key, colon, field = part.partition(":")
        if colon:
            yield key.strip().upper(), field.strip().upper()


def _spam(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    held = list(spam_verdict(msg, ctx.scl_threshold).held)
    # A sender whose domain disowns the message: answering would mail whoever it forged.
    if forged := dmarc_failure(msg, ctx.commands):
        held.append(forged)
    return "; ".join(held) or None


def _over_cap(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    if ctx.sent_to_sender_last_day >= ctx.cap_per_day:
        return f"{ctx.sent_to_sender_last_day} acknowledgements in 24 hours (cap {ctx.cap_per_day})"
    return None


def _over_domain_cap(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    sent = ctx.sent_to_domain_last_day
    if sent is not None and sent >= ctx.cap_per_domain_per_day:
        return (
            f"{sent} acknowledgements to this domain in 24 hours (cap {ctx.cap_per_domain_per_day})"
        )
    return None


def _form_resident(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    form = ctx.form
    return form.no_resident if form is not None and form.resident is None else None


# Every rule but the per-sender cap reads only the message (and the council's addresses),
# so the pipeline screens with them before its database transaction; the cap needs the
# database's count, so it comes last, inside it.
MESSAGE_RULES: tuple[Rule, ...] = (
    Rule("spam", "marked as spam, phishing or forged by the council's mail servers", _spam),
    Rule("no-sender", "sender address missing or invalid", _no_sender),
    Rule("auto-submitted", "automatic mail (RFC 3834 Auto-Submitted)", _auto_submitted),
    Rule("precedence", "bulk, list, junk or auto-reply precedence", _precedence),
    Rule("suppress-autoresponse", "sender asked for no automatic replies", _suppress_header),
    Rule("autoreply-header", "auto-responder header", _autoreply_headers),
    Rule("mailing-list", "mailing-list header", _list_headers),
    Rule("loop", "loop-detection header (ours or another system's)", _loop_headers),
    Rule("null-return-path", "bounce or notification (empty Return-Path)", _null_return_path),
    Rule("report", "delivery or read report (multipart/report)", _report),
    Rule("machine-sender", "no-reply, bounce or list-robot sender", _machine_sender),
    Rule("machine-name", "sender named as a mail system", _machine_name),
    Rule("auto-reply-subject", "subject of an automatic reply or bounce", _auto_subject),
    Rule("vendor-auto-reply", "mail system's own automatic-reply header", _vendor_auto),
    Rule("own-address", "sent by the council's own mailbox or an officer", _own_address),
)
_SAME_FOR_FORMS = {rule.name: rule for rule in MESSAGE_RULES}
# A configured web form is a machine that sends on a resident's behalf, and its message is
# answered at the resident's address, never at the form's: the rules about an automatic
# sender (Auto-Submitted, no-reply, bulk precedence ...) are about the form and do not
# apply. The resident must be a usable address (the "form" rule: valid, not the council's
# own, not a robot), and spam, lists, loops, bounces and reports are held as ever.
FORM_RULES: tuple[Rule, ...] = (
    _SAME_FOR_FORMS["spam"],
    Rule("form", "web form message with no resident address to acknowledge", _form_resident),
    *(
        _SAME_FOR_FORMS[name]
        for name in ("mailing-list", "loop", "null-return-path", "report", "auto-reply-subject")
    ),
)
CAP_RULES = (
    Rule("sender-cap", "too many acknowledgements to this sender today", _over_cap),
    Rule("domain-cap", "too many acknowledgements to this domain today", _over_domain_cap),
)
RULES = MESSAGE_RULES + CAP_RULES


def rules_before_the_cap(ctx: ScreenContext) -> tuple[Rule, ...]:
    """The chain a message is screened with before the database's cap: a web form's, or
    every other message's."""
    return FORM_RULES if ctx.form is not None else MESSAGE_RULES


def screen(
    msg: ParsedMessage, ctx: ScreenContext, rules: tuple[Rule, ...] | None = None
) -> list[Reason]:
    """Every reason this message must not be acknowledged under `rules` (unless given,
    all of them: a web form's chain for a form's message); empty means it may be."""
    reasons = []
    for rule in rules if rules is not None else rules_before_the_cap(ctx) + CAP_RULES:
        detail = rule.check(msg, ctx)
        if detail:
            # Details quote the sender's headers: one line, and short enough to read.
            reasons.append(Reason(rule.name, f"{rule.description} ({clean_text(detail, 120)})"))
    return reasons
