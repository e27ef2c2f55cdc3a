"""Test servers that speak TLS and XOAUTH2: a throwaway CA, Dovecot, aiosmtpd, an OAuth2 IdP."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import ssl
import threading
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailbot import devservers
from mailbot.devservers import LocalDovecot, free_port
from mailbot.oauth import GOOGLE_SCOPE, GOOGLE_TOKEN_URI, MICROSOFT_SCOPE

NOW = dt.datetime.now(dt.UTC)


# --- a certificate authority ------------------------------------------------------------


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


class TestCA:
    """A private CA in a folder: ca.pem, and server certificates issued on demand."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "Mailbot Test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public = self._key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=30))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.path = directory / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        *,
        dns: Iterable[str] = ("localhost",),
        ips: Iterable[str] = ("127.0.0.1",),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> ServerCert:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - dt.timedelta(days=1))
            .not_valid_after(not_after or NOW + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        stem = self.directory / name.replace(" ", "-")
        cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return ServerCert(cert_path, key_path)

    def good(self) -> ServerCert:
        return self.issue("good")

    def expired(self) -> ServerCert:
        return self.issue(
            "expired",
            not_before=NOW - dt.timedelta(days=400),
            not_after=NOW - dt.timedelta(days=35),
        )

    def wrong_host(self) -> ServerCert:
        return self.issue("wrong-host", dns=("mail.example.net",), ips=())


# --- Dovecot with TLS, or with XOAUTH2 ---------------------------------------------------


@dataclass
class ConfiguredDovecot(LocalDovecot):
    """LocalDovecot with its config changed: TLS (ssl = required) and/or an oauth2 passdb.

    `port` is the plain IMAP port (STARTTLS when a certificate is given), `tls_port`
    the implicit-TLS one. With `introspection_url`, logins are by XOAUTH2 only, each
    token checked by Dovecot's oauth2 passdb against that URL.
    """

    cert: ServerCert | None = None
    tls_port: int = field(default_factory=free_port)
    introspection_url: str | None = None

    def _config(self, d: Path, uid: int) -> str:
        text = devservers._CONFIG.format(dir=d, port=self.port, uid=uid, password=self.password)
        # Refused logins are tested: no 2 s delay, and no growing penalty for the next login
        # from 127.0.0.1 (Dovecot's documented way to turn the penalty off).
        text += "auth_failure_delay = 0\n"
        text += "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n"
        if self.cert is not None:
            # Dovecot's master reads these as root before dropping privileges.
            tls = f"ssl = required\nssl_cert = <{self.cert.cert}\nssl_key = <{self.cert.key}"
            text = text.replace("ssl = no", tls)
            text = text.replace("port = 0", f"address = 127.0.0.1\n    port = {self.tls_port}")
        if self.introspection_url is not None:
            (d / "oauth2.conf").write_text(
                f"introspection_mode = post\n"
                f"introspection_url = {self.introspection_url}\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
            text = text.replace(
                "auth_mechanisms = plain login", "auth_mechanisms = xoauth2\nauth_verbose = yes"
            )
            static = f"passdb {{\n  driver = static\n  args = password={self.password}\n}}"
            assert static in text, "devservers' Dovecot template changed"
            text = text.replace(
                static, f"passdb {{\n  driver = oauth2\n  args = {d}/oauth2.conf\n}}"
            )
        return text


# --- an OAuth2 identity provider ---------------------------------------------------------


@dataclass
class IdentityProvider:
    """Microsoft's and Google's token endpoints as far as mailbot uses them, plus a token
    introspection endpoint (RFC 7662) for Dovecot to check the tokens it hands out.

    Microsoft: GET /{tenant}/v2.0/.well-known/openid-configuration, then
    POST /{tenant}/oauth2/v2.0/token (client_credentials). Google: POST /google/token with
    a service account's signed JWT. Introspection: POST /introspect (token=...).
    """

    # The mailbox the Microsoft app has been given (FullAccess): app-only tokens open it.
    mailbox: str = "council@example.org"
    tenant: str = "11111111-2222-3333-4444-555555555555"
    client_id: str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    client_secret: str = "right-secret"
    expires_in: int = 3600
    google_public_pem: bytes = b""
    google_user: str = ""
    issued: dict[str, str] = field(default_factory=dict)  # token -> user ("" for app-only)
    revoked: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    down: bool = False  # answer every token request with 503
    url: str = ""  # the first HTTPS listener's base URL
    lock: threading.Lock = field(default_factory=threading.Lock)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def serve(self, tls: ServerCert | None = None) -> str:
        """Start one listener on 127.0.0.1 (HTTPS with `tls`); returns its base URL."""
        provider = self

        class Handler(_Handler):
            idp = provider

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            server.socket = tls.server_context().wrap_socket(server.socket, server_side=True)
            scheme = "https"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers.append(server)
        url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        if tls is not None and not self.url:
            self.url = url
        return url

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def _new_token(self, user: str) -> str:
        with self.lock:
            token = f"token-{len(self.issued) + 1}-{os.urandom(6).hex()}"
            self.issued[token] = user
            return token

    def valid(self, token: str) -> bool:
        with self.lock:
            return token in self.issued and token not in self.revoked


class _Handler(BaseHTTPRequestHandler):
    idp: IdentityProvider

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        idp = self.idp
        idp.requests.append(f"GET {self.path}")
        base = f"https://{self.headers['Host']}/{idp.tenant}"
        if self.path == f"/{idp.tenant}/v2.0/.well-known/openid-configuration":
            self._reply(
                200,
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                },
            )
        else:
            self._reply(
                400,
                {
                    "error": "invalid_tenant",
                    "error_description": "AADSTS90002: Tenant not found. Check to make "
                    "sure you have the correct tenant ID.",
                },
            )

    def do_POST(self) -> None:
        idp = self.idp
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        idp.requests.append(f"POST {self.path}")
        if self.path == "/introspect":
            token = form.get("token", "")
            if idp.valid(token):
                self._reply(200, {"active": True, "username": idp.issued[token] or idp.mailbox})
            else:
                self._reply(200, {"active": False})
            return
        if idp.down:
            self._reply(503, {"error": "temporarily_unavailable"})
            return
        if self.path == f"/{idp.tenant}/oauth2/v2.0/token":
            self._microsoft(form)
        elif self.path == "/google/token":
            self._google(form)
        else:
            self._reply(404, {"error": "not_found"})

    def _microsoft(self, form: dict[str, str]) -> None:
        idp = self.idp
        if form.get("client_id") != idp.client_id or form.get("client_secret") != (
            idp.client_secret
        ):
            self._reply(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided. "
                    "Ensure the secret being sent in the request is the client secret value.",
                },
            )
            return
        if form.get("grant_type") != "client_credentials" or form.get("scope") != (MICROSOFT_SCOPE):
            self._reply(400, {"error": "invalid_request", "error_description": f"bad {form}"})
            return
        token = idp._new_token("")
        self._reply(
            200, {"token_type": "Bearer", "expires_in": idp.expires_in, "access_token": token}
        )

    def _google(self, form: dict[str, str]) -> None:
        from google.auth import jwt

        idp = self.idp
        try:
            # google-auth addresses every assertion to Google's own endpoint.
            claims = jwt.decode(
                form.get("assertion", ""), certs=idp.google_public_pem, audience=GOOGLE_TOKEN_URI
            )
        except ValueError as exc:
            self._reply(400, {"error": "invalid_grant", "error_description": str(exc)})
            return
        if (
            form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer"
            or claims.get("scope") != GOOGLE_SCOPE
            or claims.get("sub") != idp.google_user
        ):
            self._reply(
                401,
                {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens "
                    "using this method, or client not authorized for any of the scopes "
                    "requested.",
                },
            )
            return
        token = idp._new_token(claims["sub"])
        self._reply(
            200, {"token_type": "Bearer", "expires_in": idp.expires_in, "access_token": token}
        )


def service_account_key(client_email: str = "mailbot@council-mail.iam.gserviceaccount.com"):
    """A fresh RSA service account key as Google's JSON, and its public key PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = {
        "type": "service_account",
        "project_id": "council-mail",
        "private_key_id": "0123456789abcdef",
        "private_key": private,
        "client_email": client_email,
        "client_id": "123456789012345678901",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return info, public


# --- SMTP with TLS and AUTH ---------------------------------------------------------------


@dataclass
class SmtpTest:
    """aiosmtpd on 127.0.0.1: implicit TLS (`tls`), STARTTLS required (`starttls`), or
    plain; AUTH PLAIN/LOGIN by `password`, AUTH XOAUTH2 by any token `idp` issued."""

    mode: str  # tls | starttls | none
    cert: ServerCert | None = None
    user: str = "council@example.org"
    password: str = "secret"
    idp: IdentityProvider | None = None
    refuse_rcpt: str | None = None  # e.g. "554 5.7.1 Relay access denied"
    refuse_mail: str | None = None
    port: int = field(default_factory=free_port)
    commands: list[str] = field(default_factory=list)
    _controller: Controller | None = None

    def start(self) -> SmtpTest:
        kwargs: dict[str, Any] = {}
        if self.mode == "tls":
            assert self.cert is not None
            kwargs["ssl_context"] = self.cert.server_context()
            # The connection is TLS from the start; aiosmtpd only counts STARTTLS as TLS.
            kwargs["auth_require_tls"] = False
        elif self.mode == "starttls":
            assert self.cert is not None
            kwargs["tls_context"] = self.cert.server_context()
            kwargs["require_starttls"] = True
        else:
            kwargs["auth_require_tls"] = False
        self._controller = Controller(
            _SmtpHandler(self),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            **kwargs,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            ok = data.login.decode() == self.user and data.password.decode() == self.password
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)


class _SmtpHandler:
    def __init__(self, test: SmtpTest) -> None:
        self.test = test

    async def auth_XOAUTH2(self, server: SMTPServer, args: list[str]) -> AuthResult:
        """SASL XOAUTH2: user=...^Aauth=Bearer TOKEN^A^A, checked against the IdP's tokens."""
        self.test.commands.append("AUTH XOAUTH2")
        if len(args) < 2:
            blob = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(blob, bytes):
                return AuthResult(success=False)
        else:
            blob = base64.b64decode(args[1])
        fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        idp = self.test.idp
        if idp is not None and fields.get("user") == self.test.user and idp.valid(token):
            return AuthResult(success=True, auth_data=fields["user"])
        # Google and Microsoft send a base64 JSON error as a 334 challenge; the client
        # answers with an empty line and then gets the 535.
        error = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
        await server.challenge_auth(error, encode_to_b64=False)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Invalid token")

    async def handle_MAIL(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        self.test.commands.append(f"MAIL {address}")
        if self.test.refuse_mail:
            return self.test.refuse_mail
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        self.test.commands.append(f"RCPT {address}")
        if self.test.refuse_rcpt:
            return self.test.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_RSET(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.test.commands.append("RSET")
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.test.commands.append("DATA")
        return "250 OK"
