"""Refusals: an SMTP server's "no" sorted by what it is about (pure, no server)."""

from __future__ import annotations

import pytest

from mailbot.refusals import About, Step, sort_refusal

# (code, text, step, what it is about), as Postfix, Exim and Microsoft 365 word them.
REFUSALS = [
    # our account, our address or this server: nothing to do with the message
    (553, "5.7.1 <council@example.org>: Sender address rejected: not owned by user x", Step.RCPT,
     About.ACCOUNT),
    (554, "5.7.1 <unknown[192.0.2.7]>: Client host rejected: Access denied", Step.RCPT,
     About.ACCOUNT),
    (554, "5.7.1 <jane@example.com>: Relay access denied", Step.RCPT, About.ACCOUNT),
    (550, "5.7.60 SMTP; Client does not have permissions to send as this sender", Step.DATA,
     About.ACCOUNT),
    (530, "5.7.57 Client not authenticated to send mail", Step.MAIL, About.ACCOUNT),
    (535, "5.7.8 Error: authentication failed", Step.CONNECT, About.ACCOUNT),
    (530, "5.7.0 Authentication required", Step.RCPT, About.ACCOUNT),
    (550, "5.1.8 Sender address rejected: Domain not found", Step.RCPT, About.ACCOUNT),
    (450, "4.7.25 Client host rejected: cannot find your hostname", Step.RCPT, About.ACCOUNT),
    (421, "4.3.2 Service shutting down", Step.RCPT, About.ACCOUNT),
    (550, "Requested action not taken: mailbox unavailable", Step.MAIL, About.ACCOUNT),
    # this recipient
    (550, "5.1.1 <gone@example.com>: Recipient address rejected: User unknown in local "
     "recipient table", Step.RCPT, About.RECIPIENT),
    (550, "5.1.1 No such user", Step.RCPT, About.RECIPIENT),
    (552, "5.2.2 Mailbox full", Step.RCPT, About.RECIPIENT),
    (452, "4.2.2 Mailbox full", Step.RCPT, About.RECIPIENT),
    (550, "5.7.1 <x@example.com>: Recipient address rejected: Access denied", Step.RCPT,
     About.RECIPIENT),
    (550, "Mailbox unavailable", Step.RCPT, About.RECIPIENT),  # no code: RCPT's
    (451, "4.3.0 Try again later", Step.RCPT, About.RECIPIENT),
    # this message
    (552, "5.3.4 Message size exceeds fixed limit", Step.DATA, About.MESSAGE),
    (554, "5.6.7 Non-ASCII addresses not permitted for that sender/recipient", Step.DATA,
     About.MESSAGE),
    (554, "Transaction failed", Step.DATA, About.MESSAGE),
]  # fmt: skip


@pytest.mark.parametrize(("code", "text", "step", "about"), REFUSALS)
def test_each_refusal_is_sorted_by_what_it_is_about(code, text, step, about):
    refusal = sort_refusal(code, text, step)
    assert refusal.about == about
    assert refusal.permanent == (code >= 500)
    assert refusal.pauses_sending == (about is About.ACCOUNT)
    assert refusal.reply == f"{code} {text}"


def test_the_reply_is_kept_on_one_line_and_short():
    refusal = sort_refusal(550, "5.1.1 first line\r\n second line " + "x" * 500, Step.RCPT)
    assert refusal.reply.startswith("550 5.1.1 first line second line x")
    assert "\n" not in refusal.reply and len(refusal.reply) <= 304
