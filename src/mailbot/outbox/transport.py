"""SMTP: connecting and signing in, handing over one message, and what each answer means
for it (sent, try later, refused, uncertain) or for its sender (paused)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiosmtplib

from mailbot import faults
from mailbot.addresses import for_the_wire, needs_smtputf8
from mailbot.config import ConfigError, SmtpConfig
from mailbot.oauth import OAuthError, OAuthTokens
from mailbot.outbox.delivery import Claim, failed, hold, uncertain
from mailbot.outbox.pauses import Pauses
from mailbot.problems import ProblemKind
from mailbot.refusals import Refusal, Step, sort_refusal

if TYPE_CHECKING:
    from mailbot.app import App

log = logging.getLogger("mailbot.outbox")


CONNECT_ERRORS = (aiosmtplib.SMTPException, OSError, ssl.SSLError, OAuthError, ConfigError)


@dataclass
class KeptConnections:
    """The sending process's SMTP connections, kept between passes while mail keeps
    coming, so a busy morning is not a new connection (and sign-in) for every batch."""

    lanes: list[aiosmtplib.SMTP] = field(default_factory=list)

    async def take(self) -> list[aiosmtplib.SMTP]:
        """The kept connections the server still answers on."""
        lanes, self.lanes = self.lanes, []
        alive = []
        for smtp in lanes:
            try:
                await smtp.noop()  # servers drop idle connections; find out first
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()
                continue
            alive.append(smtp)
        return alive

    def keep(self, lanes: list[aiosmtplib.SMTP]) -> None:
        self.lanes = lanes

    async def close(self) -> None:
        lanes, self.lanes = self.lanes, []
        for smtp in lanes:
            await quit_smtp(smtp)

    def __bool__(self) -> bool:
        return bool(self.lanes)


async def quit_smtp(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


async def connect(cfg: SmtpConfig, tokens: OAuthTokens | None = None) -> aiosmtplib.SMTP:
    context = ssl.create_default_context(cafile=cfg.ca_path)
    smtp = aiosmtplib.SMTP(
        hostname=cfg.host,
        port=cfg.port,
        use_tls=cfg.security == "tls",
        start_tls=cfg.security == "starttls",
        tls_context=context,
        timeout=cfg.timeout,
    )
    await smtp.connect()
    if cfg.auth == "xoauth2":
        if tokens is None:
            raise OAuthError('smtp.auth = "xoauth2" needs an [oauth] table')
        # msal and google-auth block on HTTP: keep the event loop free while they renew.
        token = await asyncio.to_thread(tokens.for_user(cfg.username).token)
        await smtp.auth_xoauth2(cfg.username, token)
    elif cfg.username:
        await smtp.login(cfg.username, cfg.password())
    return smtp


async def smtp_login_check(cfg: SmtpConfig) -> None:
    """Connect and log in, then leave: `mailbot check --connect`."""
    try:
        smtp = await connect(cfg)
    except (aiosmtplib.SMTPException, ssl.SSLError) as exc:
        raise OSError(f"SMTP {cfg.host}:{cfg.port}: {exc}") from exc
    await smtp.quit()


async def send_one(app: App, smtp: aiosmtplib.SMTP, claim: Claim, pauses: Pauses) -> str:
    sessions, cfg, clock = app.sessions, app.cfg, app.clock
    row_id, raw, recipient = claim.row_id, claim.raw, claim.recipient
    if claim.error or not raw:
        return failed(sessions, clock, row_id, claim.error or "empty message", permanent=True)
    sender = claim.sender or cfg.council.mailbox_address
    if pauses.waiting(sender):
        return hold(sessions, row_id, pauses.reason(sender))
    step = Step.MAIL
    try:
        options, encoding = await _international(smtp, recipient)
        if encoding is None:
            why = (
                f"the SMTP server does not take international addresses (no SMTPUTF8, RFC "
                f"6531), and {recipient} has letters outside ASCII before the @"
            )
            return failed(sessions, clock, row_id, why, permanent=True)
        # MAIL and RCPT first: a failure there means the server has nothing, so it is
        # safe to try again later.
        await smtp.mail(cfg.council.mailbox_address, options=options, encoding=encoding)
        step = Step.RCPT
        address = recipient if options else for_the_wire(recipient)
        await smtp.rcpt(address, encoding=encoding)
    except aiosmtplib.SMTPResponseException as exc:
        await _reset(smtp)
        return refused(app, row_id, sender, sort_refusal(exc.code, exc.message, step), pauses)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return failed(sessions, clock, row_id, f"SMTP error: {exc}", permanent=False)
    try:
        await smtp.data(raw)
    except aiosmtplib.SMTPResponseException as exc:
        # The server answered "no" to the message itself: it does not have it.
        refusal = sort_refusal(exc.code, exc.message, Step.DATA)
        return refused(app, row_id, sender, refusal, pauses)
    except (aiosmtplib.SMTPException, OSError) as exc:
        # No answer after the whole message went over: the server may have queued it
        # (RFC 1047), so it is as uncertain as a kill -9 mid-send and is not sent again.
        return uncertain(sessions, clock, row_id, f"the server did not confirm the message: {exc}")
    faults.crash_point("after-send")
    pauses.resume(sender)  # taken: if sending as this address was refused, it is not now
    return "sent"  # recorded by the caller, with the claim of the next message


async def _international(smtp: aiosmtplib.SMTP, recipient: str) -> tuple[list[str], str | None]:
    """MAIL FROM's options and the envelope's encoding for this recipient: SMTPUTF8 and
    UTF-8 where letters outside ASCII come before the @ (None: the server cannot take
    it), else none and ASCII (an international domain goes as IDNA's ASCII form)."""
    if not needs_smtputf8(recipient):
        return [], "ascii"
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    if not smtp.supports_extension("smtputf8"):
        return [], None
    options = ["SMTPUTF8"] + (["BODY=8BITMIME"] if smtp.supports_extension("8bitmime") else [])
    return options, "utf-8"


def refused(app: App, row_id: int, sender: str, refusal: Refusal, pauses: Pauses) -> str:
    """A refusal about our account pauses sending as `sender` (this message waits with
    the rest); one about the recipient or the message is this message's alone."""
    if refusal.pauses_sending:
        detail = f"the SMTP server refuses to send mail from {sender}: {refusal.reply}"
        # "Not now" (4xx) may pass by itself, like a server out of reach: the clerk hears
        # only if it lasts. A permanent refusal will not, and is told at once.
        kind = ProblemKind.SENDING_REFUSED if refusal.permanent else ProblemKind.SMTP_UNREACHABLE
        pauses.pause(sender, kind, detail)
        return hold(app.sessions, row_id, pauses.reason(sender))
    return failed(app.sessions, app.clock, row_id, f"SMTP {refusal.reply}", refusal.permanent)


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await smtp.rset()


def connect_problem(cfg: SmtpConfig, exc: BaseException) -> tuple[ProblemKind, str]:
    """What a failure to connect and sign in says: an answer about the sign-in, a
    certificate or a setting will not mend itself; no answer at all may."""
    where = f"{cfg.host}:{cfg.port}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        refusal = sort_refusal(exc.code, exc.message, Step.CONNECT)
        return (
            ProblemKind.SENDING_REFUSED,
            f"the SMTP server {where} refuses mailbot: {refusal.reply}",
        )
    if isinstance(exc, ssl.SSLCertVerificationError | OAuthError | ConfigError):
        return ProblemKind.SENDING_REFUSED, f"cannot sign in to the SMTP server {where}: {exc}"
    return ProblemKind.SMTP_UNREACHABLE, f"cannot reach the SMTP server {where}: {exc}"
