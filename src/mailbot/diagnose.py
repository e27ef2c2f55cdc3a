"""`mailbot check --connect`: each step to the mail servers tried in turn, with what to fix."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import aiosmtplib
from imapclient.exceptions import IMAPClientError, LoginError

from mailbot.config import ConfigError, ServerConfig
from mailbot.mailbox import Mailbox, MailboxError, tls_context
from mailbot.oauth import OAuthError, OAuthTokens, xoauth2_base64

if TYPE_CHECKING:
    from mailbot.config import Config, ImapConfig, SmtpConfig

# A diagnosis should answer in seconds: a firewall that drops packets shows as a timeout.
MAX_WAIT = 20.0


@dataclass(frozen=True)
class Finding:
    step: str  # e.g. "imap dns", "smtp relay"
    ok: bool
    message: str
    hint: str = ""


class _Stop(Exception):
    """A step failed; the later steps for this server cannot be tried."""


def check_connection(cfg: Config, *, tokens: OAuthTokens | None = None) -> list[Finding]:
    """Every step to IMAP and to SMTP; a server's checks stop at its first failure."""
    oauth = getattr(cfg, "oauth", None)
    if tokens is None and oauth is not None:
        tokens = OAuthTokens(oauth)
    findings = check_imap(cfg.imap, tokens)
    for box in cfg.mailboxes:
        findings += [_for_mailbox(f, box, cfg.address_of(box)) for f in check_imap(box, tokens)]
    findings += check_smtp(cfg.smtp, cfg.council.mailbox_address, tokens)
    return findings


def _for_mailbox(finding: Finding, box: ImapConfig, address: str) -> Finding:
    """A [[mailboxes]] entry's finding, saying which mailbox and which keys to change."""
    where = box._label or "imap"
    return Finding(
        f"{finding.step} ({address})",
        finding.ok,
        finding.message,
        finding.hint.replace("imap.", f"{where}."),
    )


def failed(findings: list[Finding]) -> bool:
    return any(not f.ok for f in findings)


def format_findings(findings: list[Finding]) -> str:
    width = max((len(f.step) for f in findings), default=0)
    lines = []
    for f in findings:
        lines.append(f"{'ok  ' if f.ok else 'FAIL'}  {f.step:<{width}}  {f.message}")
        if f.hint:
            lines.append(f"      {'':<{width}}  hint: {f.hint}")
    return "\n".join(lines)


# --- IMAP -------------------------------------------------------------------------------


def check_imap(cfg: ImapConfig, tokens: OAuthTokens | None = None) -> list[Finding]:
    out: list[Finding] = []
    try:
        _reach(out, "imap", cfg)
        secret = _secret(out, "imap", cfg, tokens)
        mailbox = Mailbox(cfg, secret)
        try:
            mailbox.connect()
        except MailboxError as exc:
            out.append(_login_failure("imap", cfg, exc.__cause__ or exc))
            raise _Stop from exc
        try:
            who = cfg.username or "(no user name)"
            out.append(Finding("imap login", True, f"logged in as {who}"))
            _folders(out, cfg, mailbox)
        finally:
            mailbox.close()
    except _Stop:
        pass
    return out


def _folders(out: list[Finding], cfg: ImapConfig, mailbox: Mailbox) -> None:
    client = mailbox.client
    wanted = [("inbox", cfg.inbox)] + ([("sent", cfg.sent)] if cfg.sent else [])
    for key, name in wanted:
        try:
            exists = client.folder_exists(name)
            if exists:
                info = client.select_folder(name, readonly=True)
                count = int(info.get(b"EXISTS", 0))
                out.append(Finding(f"imap folder {key}", True, f"{name!r}: {count} message(s)"))
                continue
            names = sorted(_folder_names(client))
        except IMAPClientError as exc:
            out.append(Finding(f"imap folder {key}", False, f"cannot open {name!r}: {exc}"))
            continue
        shown = ", ".join(repr(n) for n in names[:15]) + (" ..." if len(names) > 15 else "")
        meanwhile = ""
        if key == "sent":
            marked = mailbox.marked_sent_folder()
            meanwhile = (
                f"; meanwhile mailbot reads {marked!r}, which the server marks as the sent folder"
                if marked
                else "; meanwhile officers' replies filed there are not seen"
            )
        out.append(
            Finding(
                f"imap folder {key}",
                False,
                f"folder {name!r} not found",
                f"set {cfg.key_prefix}.{key} to one of the folders on the server: {shown} "
                f"(names are case-sensitive, except INBOX){meanwhile}",
            )
        )


def _folder_names(client: Any) -> list[str]:
    names = []
    for _flags, _delimiter, name in client.list_folders():
        names.append(name.decode() if isinstance(name, bytes) else str(name))
    return names


# --- SMTP -------------------------------------------------------------------------------


def check_smtp(
    cfg: SmtpConfig, mailbox_address: str, tokens: OAuthTokens | None = None
) -> list[Finding]:
    out: list[Finding] = []
    try:
        _reach(out, "smtp", cfg)
        secret = _secret(out, "smtp", cfg, tokens)
        asyncio.run(_smtp_session(out, cfg, secret, mailbox_address))
    except _Stop:
        pass
    return out


async def _smtp_session(
    out: list[Finding], cfg: SmtpConfig, secret: str, mailbox_address: str
) -> None:
    try:
        context = tls_context(cfg.ca_path)
    except (OSError, ssl.SSLError) as exc:  # already reported by the TLS step
        raise _Stop from exc
    smtp = aiosmtplib.SMTP(
        hostname=cfg.host,
        port=cfg.port,
        use_tls=cfg.security == "tls",
        start_tls=cfg.security == "starttls",
        tls_context=context,
        timeout=min(cfg.timeout, MAX_WAIT),
    )
    try:
        await smtp.connect()
    except (aiosmtplib.SMTPException, OSError) as exc:
        out.append(Finding("smtp connect", False, f"SMTP session failed: {_one_line(exc)}"))
        raise _Stop from exc
    try:
        if cfg.auth == "xoauth2" or cfg.username:
            await _smtp_login(out, smtp, cfg, secret)
        await _smtp_relay(out, smtp, mailbox_address)
    finally:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


async def _smtp_login(
    out: list[Finding], smtp: aiosmtplib.SMTP, cfg: SmtpConfig, secret: str
) -> None:
    try:
        if smtp.is_ehlo_or_helo_needed:  # after STARTTLS the server's offer is asked anew
            await smtp.ehlo()
        if cfg.auth == "xoauth2":
            if not smtp.supports_extension("auth") or "xoauth2" not in smtp.server_auth_methods:
                raise aiosmtplib.SMTPException("the server does not offer AUTH XOAUTH2")
            answer = await smtp.execute_command(
                b"AUTH", b"XOAUTH2", xoauth2_base64(cfg.username, secret).encode()
            )
            if answer.code == 334:  # an error challenge: an empty line gets the final reply
                answer = await smtp.execute_command(b"")
            if answer.code != 235:
                raise aiosmtplib.SMTPAuthenticationError(answer.code, answer.message)
        else:
            await smtp.login(cfg.username, secret)
    except aiosmtplib.SMTPAuthenticationError as exc:
        out.append(
            Finding(
                "smtp login",
                False,
                f"the SMTP server refused the login for {cfg.username}: {exc.code} "
                f"{_one_line(exc.message)}",
                _smtp_login_hint(cfg, exc.message),
            )
        )
        raise _Stop from exc
    except aiosmtplib.SMTPException as exc:
        out.append(
            Finding(
                "smtp login",
                False,
                f"cannot log in: {_one_line(exc)}",
                "the server offers no (suitable) AUTH on this connection: it may want "
                'security = "starttls" first, or be a relay that knows this server by its IP '
                "address (then leave smtp.username empty)",
            )
        )
        raise _Stop from exc
    out.append(Finding("smtp login", True, f"logged in as {cfg.username}"))


def _smtp_login_hint(cfg: SmtpConfig, message: str) -> str:
    if "5.7.139" in message or "SmtpClientAuthentication" in message:
        return (
            "Microsoft 365 has SMTP AUTH switched off for this mailbox or tenant: turn on "
            "Authenticated SMTP for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled "
            "$false)"
        )
    if cfg.auth == "xoauth2":
        return (
            "the token was refused: for Microsoft 365 the app needs the SMTP.SendAsApp "
            "permission with admin consent and its service principal needs rights on the "
            "mailbox; for Google, domain-wide delegation must include https://mail.google.com/"
        )
    return (
        "check smtp.username and the password in smtp.password_file; Microsoft 365 and Google "
        'refuse ordinary passwords for many accounts: use auth = "xoauth2"'
    )


async def _smtp_relay(out: list[Finding], smtp: aiosmtplib.SMTP, address: str) -> None:
    """MAIL FROM and RCPT TO the council mailbox, then RSET: nothing is ever sent."""
    try:
        await smtp.mail(address)
    except aiosmtplib.SMTPSenderRefused as exc:
        out.append(
            Finding(
                "smtp relay",
                False,
                f"the server refused {address} as sender: {exc.code} {_one_line(exc.message)}",
                "this login may not send as the council mailbox: log in as the mailbox, or "
                "give the login Send As rights (Microsoft 365: Add-RecipientPermission)",
            )
        )
        raise _Stop from exc
    try:
        await smtp.rcpt(address)
    except aiosmtplib.SMTPRecipientRefused as exc:
        out.append(
            Finding(
                "smtp relay",
                False,
                f"the server refused to take mail for {address}: {exc.code} "
                f"{_one_line(exc.message)}",
                "the server will not relay for this connection: log in (smtp.username and "
                "smtp.password_file) or ask the mail administrator to let this server's "
                "address relay",
            )
        )
        raise _Stop from exc
    finally:
        await smtp.rset()
    out.append(
        Finding("smtp relay", True, f"would accept mail from {address} to {address} (not sent)")
    )


# --- the steps every server shares -------------------------------------------------------


def _reach(out: list[Finding], kind: str, cfg: ServerConfig) -> None:
    """DNS, TCP and TLS: appends a finding for each, raises _Stop at the first failure."""
    addresses = _dns(out, kind, cfg)
    sock = _tcp(out, kind, cfg, addresses)
    try:
        _tls(out, kind, cfg, sock)
    finally:
        sock.close()


def _dns(out: list[Finding], kind: str, cfg: ServerConfig) -> list[tuple[Any, ...]]:
    try:
        found = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_FAIL", -4)):
            hint = "this server's DNS resolver did not answer: check /etc/resolv.conf"
        else:
            hint = (
                f"check {kind}.host for a typing mistake; `getent hosts {cfg.host}` on this "
                "server does the same lookup"
            )
        out.append(Finding(f"{kind} dns", False, f"cannot find {cfg.host}: {exc.strerror}", hint))
        raise _Stop from exc
    ips = list(dict.fromkeys(str(info[4][0]) for info in found))
    out.append(Finding(f"{kind} dns", True, f"{cfg.host} is {', '.join(ips[:4])}"))
    return found


def _tcp(
    out: list[Finding], kind: str, cfg: ServerConfig, addresses: list[tuple[Any, ...]]
) -> socket.socket:
    wait = min(cfg.timeout, MAX_WAIT)
    errors: list[OSError] = []
    for family, kind_, proto, _name, address in addresses:
        sock = socket.socket(family, kind_, proto)
        sock.settimeout(wait)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        out.append(Finding(f"{kind} tcp", True, f"connected to {address[0]} port {cfg.port}"))
        return sock
    exc = errors[-1] if errors else OSError("no address")
    usual = {
        "imap": "993 with tls or 143 with starttls",
        "smtp": "587 with starttls or 465 with tls",
    }
    if any(isinstance(e, ConnectionRefusedError) for e in errors):
        message = f"{cfg.host} refused the connection on port {cfg.port}"
        hint = f"nothing listens there: check {kind}.port (usually {usual[kind]})"
    elif any(isinstance(e, TimeoutError) for e in errors):
        message = f"no answer from {cfg.host} port {cfg.port} within {wait:.0f} s"
        hint = (
            f"a firewall is probably dropping the connection: allow outgoing TCP port {cfg.port} "
            "from this server (and check the unit's IPAddressDeny/IPAddressAllow)"
        )
    else:
        message = f"cannot connect to {cfg.host} port {cfg.port}: {exc.strerror or exc}"
        hint = "check this server's network and routes to the mail server"
    out.append(Finding(f"{kind} tcp", False, message, hint))
    raise _Stop from exc


def _tls(out: list[Finding], kind: str, cfg: ServerConfig, sock: socket.socket) -> None:
    if cfg.security == "none":
        out.append(Finding(f"{kind} tls", True, 'not used (security = "none", loopback only)'))
        return
    try:
        context = tls_context(cfg.ca_path)
    except (OSError, ssl.SSLError) as exc:
        out.append(
            Finding(
                f"{kind} tls",
                False,
                f"cannot read {kind}.ca_file {cfg.ca_file}: {_reason(exc)}",
                "ca_file must be a PEM file holding the certificate authority's certificate",
            )
        )
        raise _Stop from exc
    try:
        tls = _upgrade(kind, cfg, sock, context)
    except ssl.SSLCertVerificationError as exc:
        out.append(_certificate_failure(kind, cfg, exc))
        raise _Stop from exc
    except (ssl.SSLError, OSError, _Refused) as exc:
        out.append(_handshake_failure(kind, cfg, exc))
        raise _Stop from exc
    with tls:
        cert = tls.getpeercert() or {}
        version = tls.version() or "TLS"
    subject = _name(cert.get("subject", ()))
    issuer = _name(cert.get("issuer", ()))
    until = cert.get("notAfter", "")
    out.append(
        Finding(
            f"{kind} tls",
            True,
            f"{version}, certificate for {subject} from {issuer}, valid until {until}",
        )
    )


class _Refused(Exception):
    """The server would not start TLS."""


def _upgrade(
    kind: str, cfg: ServerConfig, sock: socket.socket, context: ssl.SSLContext
) -> ssl.SSLSocket:
    """TLS on a connected socket: at once (tls) or after the protocol's STARTTLS."""
    if cfg.security == "starttls":
        reader = sock.makefile("rb")
        try:
            if kind == "imap":
                _expect(reader, b"* ")
                sock.sendall(b"a1 STARTTLS\r\n")
                line = _expect(reader, b"a1 ", skip=b"* ")
                if not line.upper().startswith(b"A1 OK"):
                    raise _Refused(f"the server refused STARTTLS: {_text(line)}")
            else:
                _smtp_reply(reader, 220)
                sock.sendall(b"EHLO mailbot.invalid\r\n")
                lines = _smtp_reply(reader, 250)
                if not any(b"STARTTLS" in line.upper() for line in lines):
                    raise _Refused("the server does not offer STARTTLS")
                sock.sendall(b"STARTTLS\r\n")
                _smtp_reply(reader, 220)
        finally:
            reader.close()
    return context.wrap_socket(sock, server_hostname=cfg.host)


def _expect(reader: Any, prefix: bytes, skip: bytes = b"") -> bytes:
    while True:
        line = reader.readline(4096)
        if not line:
            raise _Refused("the server closed the connection")
        if skip and line.startswith(skip):
            continue
        if not line.upper().startswith(prefix.upper()):
            raise _Refused(f"unexpected answer: {_text(line)}")
        return line


def _smtp_reply(reader: Any, code: int) -> list[bytes]:
    lines = []
    while True:
        line = reader.readline(4096)
        if not line:
            raise _Refused("the server closed the connection")
        lines.append(line)
        if not line.startswith(str(code).encode()):
            raise _Refused(f"unexpected answer: {_text(line)}")
        if line[3:4] != b"-":
            return lines


# OpenSSL's verify codes (X509_V_ERR_*).
_EXPIRED, _NOT_YET_VALID, _HOST_MISMATCH, _IP_MISMATCH = 10, 9, 62, 64
_SELF_SIGNED, _SELF_SIGNED_IN_CHAIN = 18, 19


def _certificate_failure(
    kind: str, cfg: ServerConfig, exc: ssl.SSLCertVerificationError
) -> Finding:
    details = _peek_certificate(kind, cfg)
    step = f"{kind} tls"
    about = f" (for {details['names']}, issued by {details['issuer']})" if details else ""
    code = exc.verify_code
    if code == _EXPIRED:
        when = details.get("not_after", "") if details else ""
        return Finding(
            step,
            False,
            f"the certificate of {cfg.host} has expired" + (f" (on {when})" if when else ""),
            "the mail server's administrator must renew its certificate; if that date is "
            "still to come, this server's clock is wrong (check timedatectl). mailbot never "
            "skips certificate checks",
        )
    if code == _NOT_YET_VALID:
        return Finding(
            step,
            False,
            f"the certificate of {cfg.host} is not valid yet{about}",
            "this server's clock is probably wrong: check timedatectl",
        )
    if code in (_HOST_MISMATCH, _IP_MISMATCH):
        names = details["names"] if details else "other names"
        return Finding(
            step,
            False,
            f"the certificate is for {names}, not {cfg.host}",
            f"set {kind}.host to a name the certificate covers; connecting by IP address "
            "works only if the certificate lists that address",
        )
    if cfg.ca_file:
        hint = (
            f"{kind}.ca_file ({cfg.ca_file}) does not hold the authority that signed this "
            "certificate: put that authority's certificate (PEM) there"
        )
    elif code == _SELF_SIGNED:
        hint = f"the certificate signs itself: save it as a PEM file and set {kind}.ca_file"
    else:
        hint = (
            f"if the council runs its own certificate authority, save its certificate as a "
            f"PEM file and set {kind}.ca_file; a public server may be missing its "
            "intermediate certificate"
        )
    return Finding(
        step,
        False,
        f"the certificate of {cfg.host} is not signed by an authority this machine trusts"
        f"{about}: {exc.verify_message}",
        hint,
    )


def _handshake_failure(kind: str, cfg: ServerConfig, exc: BaseException) -> Finding:
    text = _one_line(exc)
    step = f"{kind} tls"
    if isinstance(exc, _Refused):
        return Finding(
            step,
            False,
            f"STARTTLS failed: {text}",
            f'check {kind}.port; if the server speaks TLS at once, use security = "tls"',
        )
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "EOF" in text:
        plain = {"imap": "143", "smtp": "587"}[kind]
        tls = {"imap": "993", "smtp": "465"}[kind]
        return Finding(
            step,
            False,
            f"{cfg.host} port {cfg.port} did not answer in TLS ({text})",
            f'this port probably wants STARTTLS: use security = "starttls" (usually port '
            f'{plain}), or port {tls} with security = "tls"',
        )
    if "PROTOCOL_VERSION" in text or "UNSUPPORTED_PROTOCOL" in text:
        return Finding(
            step,
            False,
            f"{cfg.host} offers only an old TLS version ({text})",
            "the mail server must be upgraded to TLS 1.2 or later",
        )
    return Finding(step, False, f"TLS handshake with {cfg.host} failed: {text}")


def _peek_certificate(kind: str, cfg: ServerConfig) -> dict[str, str]:
    """The server's certificate read without checking it, to say what is wrong with it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        sock = socket.create_connection((cfg.host, cfg.port), timeout=min(cfg.timeout, MAX_WAIT))
        with _upgrade(kind, cfg, sock, context) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError, _Refused):
        return {}
    if not der:
        return {}
    try:
        from cryptography import x509
    except ImportError:  # details are a nicety; the verify message still says what failed
        return {}
    cert = x509.load_der_x509_certificate(der)
    names: list[str] = []
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in alt.get_values_for_type(x509.DNSName)]
        names += [str(n) for n in alt.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    subject = _cn(cert.subject) or cert.subject.rfc4514_string()
    return {
        "names": ", ".join(names[:6]) or subject,
        "issuer": _cn(cert.issuer) or cert.issuer.rfc4514_string(),
        "not_after": f"{cert.not_valid_after_utc.astimezone(UTC):%Y-%m-%d}",
    }


def _cn(name: Any) -> str:
    from cryptography.x509.oid import NameOID

    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


# --- sign-in ------------------------------------------------------------------------------


def _secret(out: list[Finding], kind: str, cfg: ServerConfig, tokens: OAuthTokens | None) -> str:
    """The password, or an access token for XOAUTH2 (its own step, since it can fail alone)."""
    if cfg.auth != "xoauth2":
        try:
            return cfg.password()
        except ConfigError as exc:
            out.append(Finding(f"{kind} login", False, str(exc), "create the secret file"))
            raise _Stop from exc
    if tokens is None:
        out.append(
            Finding(
                f"{kind} token",
                False,
                f'{kind}.auth = "xoauth2" but there is no [oauth] table',
                "add [oauth] with provider and its settings (see the README)",
            )
        )
        raise _Stop
    try:
        provider = tokens.for_user(cfg.username)
        token = provider.token()
    except (OAuthError, ConfigError) as exc:
        out.append(Finding(f"{kind} token", False, str(exc), _token_hint(tokens)))
        raise _Stop from exc
    until = provider.expires_at
    valid = f", valid until {until.astimezone(UTC):%H:%M} UTC" if until else ""
    out.append(Finding(f"{kind} token", True, f"access token from {tokens.cfg.provider}{valid}"))
    return token


def _token_hint(tokens: OAuthTokens) -> str:
    if tokens.cfg.provider == "microsoft":
        return (
            "check oauth.tenant_id, oauth.client_id and the client secret in Entra ID "
            "(App registrations > Certificates & secrets: secrets expire)"
        )
    return "check the service account key file and its domain-wide delegation"


def _login_failure(kind: str, cfg: ServerConfig, exc: BaseException) -> Finding:
    user = cfg.username or "(no user name)"
    if isinstance(exc, LoginError):
        if cfg.auth == "xoauth2":
            hint = (
                "the token was refused: for Microsoft 365 the app needs IMAP.AccessAsApp with "
                "admin consent, and its service principal FullAccess to the mailbox "
                "(New-ServicePrincipal, Add-MailboxPermission); for Google, IMAP must be on"
            )
        else:
            hint = (
                f"check {kind}.username and the password in {kind}.password_file; Microsoft 365 "
                'and Google refuse ordinary passwords for many accounts: use auth = "xoauth2"'
            )
        return Finding(
            f"{kind} login",
            False,
            f"the server refused the login for {user}: {_one_line(exc)}",
            hint,
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate_failure(kind, cfg, exc)
    return Finding(f"{kind} login", False, f"cannot log in as {user}: {_one_line(exc)}")


# --- wording ------------------------------------------------------------------------------


def _name(parts: Any) -> str:
    for rdn in parts:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "?"


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or _one_line(exc))


def _text(line: bytes) -> str:
    return _one_line(line.decode("utf-8", "replace"))


def _one_line(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
