"""Resident: whom a message is from, and so where its acknowledgement goes (SPEC §5)."""

from __future__ import annotations

from dataclasses import dataclass

from mailbot.addresses import domain_of
from mailbot.forms import FormSubmission
from mailbot.parse import ParsedMessage


@dataclass(frozen=True)
class Resident:
    """The person a case is for: the acknowledgement and every later letter go here."""

    email: str
    name: str
    found_in: str  # "From", "Reply-To", or the web form and its field


def resident_of(msg: ParsedMessage, form: FormSubmission | None = None) -> Resident | None:
    """The resident of a message, or None when it names nobody to answer.

    Reply-To is the resident's only where it belongs with the sender: on the same domain
    as From, or read by a configured web form (which also finds its resident in the
    body). Anyone can write a Reply-To: answering any address a sender names would let
    strangers have the council mail whom they like.
    """
    if form is not None:
        if form.resident is None:
            return None
        return Resident(form.resident, form.name, f'web form "{form.form}", {form.found_in}')
    if msg.from_addr is None:
        return None
    if msg.reply_to and _domain(msg.reply_to) == _domain(msg.from_addr):
        return Resident(msg.reply_to, msg.from_name, "Reply-To")
    return Resident(msg.from_addr, msg.from_name, "From")


def _domain(address: str) -> str:
    return domain_of(address)  # the same domain, in its own letters or in ASCII
