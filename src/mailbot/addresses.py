"""Addresses: international email addresses (RFC 6530), written the way a mail server takes them.

A domain in another script (`mächine.example`) has an ASCII form any server takes
(`xn--mchine-bua.example`, IDNA 2008 through the `idna` package). Letters outside ASCII
before the @ (`zoë@example.net`) have none: such mail goes only to a server that offers
SMTPUTF8 (RFC 6531), with the address as UTF-8 in the envelope and the headers. Pure.
"""

from __future__ import annotations

import idna


def _ascii_domain(domain: str) -> str | None:
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def domain_of(address: str) -> str:
    """The address's domain in ASCII, lower-cased: the same domain written either way
    compares equal (caps, Reply-To on the sender's domain)."""
    domain = address.rpartition("@")[2]
    return _ascii_domain(domain) or domain.lower()


def valid_domain(domain: str) -> str | None:
    """An internationalised domain as IDNA normalises it (lower case, U-labels), or None
    when it cannot be written in ASCII at all."""
    ascii_form = _ascii_domain(domain)
    if ascii_form is None:
        return None
    try:
        return idna.decode(ascii_form)
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def needs_smtputf8(address: str) -> bool:
    """Non-ASCII letters before the @: only a server offering SMTPUTF8 can take it."""
    return not address.rpartition("@")[0].isascii()


def for_the_wire(address: str) -> str:
    """The address as a server without SMTPUTF8 can take it where one can: the domain in
    ASCII (the part before the @ is left as it is; see needs_smtputf8)."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{_ascii_domain(domain) or domain}"


def recipient_key(address: str) -> str:
    """One person's address however it is tagged: `jane+bins@x` and `jane+2@x` are
    `jane@x` (RFC 5233 subaddresses), the domain in ASCII. The per-address cap and the
    follow-up window count by it, so a tag per message cannot get round them."""
    local = address.rpartition("@")[0].lower()
    base = local.split("+", 1)[0] or local
    return f"{base}@{domain_of(address)}"
