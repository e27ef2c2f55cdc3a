"""Trust: whether mail that says it is from an officer really is, before it changes a case.

One decision for everything an officer's mail can do (commands, and the reply to a
resident that marks a case responded). Anyone on the Internet can write `From:` an
officer, a `[Ref: ...]` subject and the resident in `To:`; what they cannot write is what
the council's own servers record about a message as it arrives. Each mode of
`[commands] trust` reads one such record (SPEC §7):

- microsoft365: `X-MS-Exchange-Organization-AuthAs: Internal`. Exchange stamps it on
  mail a signed-in user of the tenant submitted (and then lets them send only as an
  address they own or may Send As); its "header firewall" removes every
  X-MS-Exchange-Organization-* header from mail arriving from outside the organisation,
  another tenant's included, and stamps that `Anonymous`.
- google: the `Authentication-Results` that Gmail's mx.google.com adds, with DMARC
  passing for the officer's domain or DKIM passing for a signature of that domain.
- authserv: the same, from the council's own border server, named by `authserv_id`.
- relays: the host the council's border server recorded handing it the message (the
  IP address in brackets, or the reverse-DNS name beside it) is one of
  `internal_relays`: whole names, IP addresses or networks.

A message in the mailbox's sent folder is trusted whatever the mode: only someone signed
in to the mailbox can put it there.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

import authres
import authres.dmarc

from mailbot.config import CommandsConfig
from mailbot.parse import ParsedMessage, clean_text

GOOGLE_AUTHSERV_ID = "mx.google.com"
_AUTHRES = authres.FeatureContext(authres.dmarc)  # core methods (dkim, spf) and dmarc
_FIRST_TOKEN = re.compile(r"^\s*(?:\([^()]*\)\s*)*([^\s;()]+)")


class Mode(StrEnum):
    MICROSOFT365 = "microsoft365"
    GOOGLE = "google"
    AUTHSERV = "authserv"
    RELAYS = "relays"


@dataclass(frozen=True)
class Decision:
    """Trusted or not, and why, in words for the case history and the officer."""

    trusted: bool
    reason: str


def _yes(reason: str) -> Decision:
    return Decision(True, reason)


def _no(reason: str) -> Decision:
    return Decision(False, reason)


def decide(
    msg: ParsedMessage, sender: str, commands: CommandsConfig, *, from_sent_folder: bool
) -> Decision:
    """Whether `sender` (an officer's or the mailbox's address, as From names it) really
    sent `msg`."""
    if from_sent_folder:
        return _yes("found in the mailbox's sent folder")
    if msg.from_addrs != (sender,):
        names = ", ".join(msg.from_addrs) or "no address"
        return _no(f"its From header names {names}, not just {sender}")
    mode = commands.mode
    domain = sender.rpartition("@")[2]
    if mode is None:
        return _no(
            "mailbot's configuration does not say how to recognise the council's own mail "
            "([commands] trust is not set)"
        )
    if mode == Mode.MICROSOFT365:
        return _microsoft365(msg, domain)
    if mode == Mode.GOOGLE:
        return _authentication_results(msg, domain, GOOGLE_AUTHSERV_ID)
    if mode == Mode.AUTHSERV:
        return _authentication_results(msg, domain, commands.authserv_id or "")
    return _relays(msg, commands.internal_relays)


def _trace(msg: ParsedMessage, name: str) -> list[str]:
    """The raw values of a trace header, top first."""
    return [value for key, value in msg.trace if key == name]


# --- Microsoft 365 ---------------------------------------------------------------------


def _microsoft365(msg: ParsedMessage, domain: str) -> Decision:
    auth_as = _trace(msg, "x-ms-exchange-organization-authas")
    if not auth_as:
        return _no("Microsoft 365 did not record it as sent from inside the council's tenant")
    outside = [value for value in auth_as if value.strip().lower() != "internal"]
    if outside:
        return _no(
            f"Microsoft 365 recorded it as sent from outside the council's tenant "
            f"(AuthAs: {clean_text(outside[0], 40)})"
        )
    direction = _trace(msg, "x-ms-exchange-organization-messagedirectionality")
    if direction and direction[0].strip().lower() != "originating":
        return _no(f"Microsoft 365 recorded it as {clean_text(direction[0], 40)} mail")
    # Exchange's own Authentication-Results (it writes no authserv-id) names the From
    # domain it read; another reading of From than ours is a trick with the header.
    for value in _trace(msg, "authentication-results")[:1]:
        read = _header_from(value)
        if read and read != domain:
            return _no(f"Microsoft 365 read the sender's domain as {read}, not {domain}")
    source = _trace(msg, "x-ms-exchange-organization-authsource")
    where = f", authenticated by {clean_text(source[0], 80)}" if source else ""
    return _yes(f"sent from inside the council's Microsoft 365 tenant (AuthAs: Internal{where})")


def _header_from(value: str) -> str | None:
    """header.from of an Exchange Online Authentication-Results, which has no authserv-id."""
    try:
        parsed = _AUTHRES.parse_value(f"exchange.invalid; {value.strip().rstrip(';')}")
    except authres.AuthResError:
        return None
    for result in parsed.results:
        for prop in result.properties:
            if (prop.type, prop.name) == ("header", "from") and prop.value:
                return prop.value.lower().rstrip(".")
    return None


# --- Authentication-Results (RFC 8601) -------------------------------------------------


def _authentication_results(msg: ParsedMessage, domain: str, authserv_id: str) -> Decision:
    """The verdict of the first Authentication-Results, from the top, that `authserv_id`
    wrote: the border server adds its own above everything the sender wrote, so any
    lower down that claims to be its may be forged."""
    ours = authserv_id.lower()
    for value in _trace(msg, "authentication-results"):
        first = _FIRST_TOKEN.match(value)
        if not first or first.group(1).lower().rstrip(".") != ours:
            continue  # another server's, perhaps a later hop inside the council
        try:
            header = _AUTHRES.parse_value(value)
        except authres.AuthResError as exc:
            return _no(f"{authserv_id}'s Authentication-Results could not be read ({exc})")
        return _verdict(header, domain, authserv_id)
    return _no(f"no Authentication-Results from {authserv_id}, the council's mail server")


def _verdict(header: authres.AuthenticationResultsHeader, domain: str, by: str) -> Decision:
    seen = []
    for result in header.results:
        method, outcome = result.method, result.result
        props = {(p.type, p.name): (p.value or "").lower().rstrip(".") for p in result.properties}
        seen.append(f"{method}={outcome}")
        if outcome != "pass":
            continue
        if method == "dmarc" and props.get(("header", "from")) == domain:
            return _yes(f"DMARC passed for {domain} ({by})")
        if method == "dkim":
            # header.d is the signing domain; header.i (Google writes only that) ends in it.
            signer = props.get(("header", "d")) or props.get(("header", "i"), "").rpartition("@")[2]
            if signer == domain or signer.endswith("." + domain):
                return _yes(f"DKIM signature of {signer} verified ({by})")
    found = ", ".join(seen) or "no results"
    spf = " (SPF alone is not enough)" if "spf=pass" in seen else ""
    return _no(f"{by} found no DMARC or DKIM pass for {domain}: {found}{spf}")


def dmarc_failure(msg: ParsedMessage, commands: CommandsConfig | None) -> str | None:
    """What the council's border server recorded when the sender's domain failed DMARC
    (the domain's owner says this message is not theirs), or None.

    Read where the trust mode says the council's own verdicts are: Exchange Online's
    Authentication-Results (the top one, without an authserv-id), Gmail's, or the border
    server's named by `authserv_id`. With relays or no mode there is no such verdict to
    read. A forged "fail" lower down could only stop its own sender being answered.
    """
    mode = commands.mode if commands else None
    values = _trace(msg, "authentication-results")
    if mode == Mode.MICROSOFT365:
        found, by = values[:1], "Microsoft 365"
        found = [f"exchange.invalid; {value.strip().rstrip(';')}" for value in found]
    elif mode in (Mode.GOOGLE, Mode.AUTHSERV):
        by = GOOGLE_AUTHSERV_ID if mode == Mode.GOOGLE else (commands.authserv_id or "")
        first = (v for v in values if (m := _FIRST_TOKEN.match(v)) and _same_host(m.group(1), by))
        found = list(first)[:1]
    else:
        return None
    for value in found:
        try:
            header = _AUTHRES.parse_value(value)
        except authres.AuthResError:
            return None  # an unreadable verdict is no verdict: the message is answered
        for result in header.results:
            if result.method == "dmarc" and result.result == "fail":
                props = {(p.type, p.name): p.value or "" for p in result.properties}
                domain = clean_text(props.get(("header", "from"), "") or "the sender's domain", 80)
                return f"DMARC failed for {domain} ({by})"
    return None


def _same_host(a: str, b: str) -> bool:
    return a.lower().rstrip(".") == b.lower().rstrip(".")


# --- internal relays -------------------------------------------------------------------

_FROM_CLAUSE = re.compile(r"^\s*from\s+(\S+)(?:\s+\(([^()]*)\))?", re.IGNORECASE)
_WITH = re.compile(r"\bwith\s+([A-Za-z0-9-]+)", re.IGNORECASE)
_BRACKETED_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.?$")


@dataclass(frozen=True)
class Hop:
    """What one Received header records about the host that handed the message on."""

    name: str | None  # the reverse-DNS name the receiving server recorded, never the HELO
    ip: str | None
    protocol: str


def received_hop(value: str) -> Hop | None:
    """The connecting host of a Received header, or None if it names none.

    Postfix and Sendmail write `from HELO (rdns [ip])`; Exim `from rdns ([ip] helo=HELO)`;
    Exchange `from HOST (ip)`. The HELO is the client's own claim and is never read.
    """
    match = _FROM_CLAUSE.match(value)
    protocol = (_WITH.search(value) or [None, ""])[1].lower()
    if not match:
        return None
    word, comment = match.group(1), match.group(2) or ""
    bracketed = _BRACKETED_IP.search(comment)
    ip = bracketed.group(1) if bracketed else _ip(comment.strip())
    if "helo=" in comment.lower():
        name = word  # Exim: the name outside the parentheses is the verified one
    else:
        before = comment.split("[", 1)[0].strip().split()
        name = before[0] if before and not _ip(before[0]) else None
    if name is not None and (name.lower() == "unknown" or not _HOST.match(name)):
        name = None
    return Hop(name=name.lower().rstrip(".") if name else None, ip=ip, protocol=protocol)


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _is_delivery(hop: Hop) -> bool:
    """A hop inside the council's own mail system, below the border server: delivery to
    the mailbox store by LMTP, or a content filter on the same machine."""
    if hop.protocol.startswith("lmtp"):
        return True
    return hop.ip is not None and ipaddress.ip_address(hop.ip).is_loopback


def _relays(msg: ParsedMessage, relays: list[str]) -> Decision:
    for value in _trace(msg, "received"):
        hop = received_hop(value)
        if hop is None:
            return _no("the council's mail server recorded no connecting host")
        if _is_delivery(hop):
            continue  # written by the council's own servers; read the one below
        for relay in relays:
            if matches_relay(hop, relay):
                return _yes(f"received from the council's relay {relay}")
        seen = " ".join(filter(None, (hop.name, f"[{hop.ip}]" if hop.ip else None)))
        return _no(f"received from {seen or 'an unnamed host'}, not one of the council's relays")
    return _no("no Received header: mailbot cannot tell where it came from")


def matches_relay(hop: Hop, relay: str) -> bool:
    """A relay is an IP address or network (matched on the recorded address) or a host
    name (matched whole on the recorded reverse-DNS name)."""
    try:
        network = ipaddress.ip_network(relay, strict=False)
    except ValueError:
        return hop.name is not None and hop.name == relay.lower().rstrip(".")
    return hop.ip is not None and ipaddress.ip_address(hop.ip) in network
