"""OAuth2: tokens from a local Microsoft/Google stand-in, renewed early, XOAUTH2 to Dovecot/SMTP."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosmtplib
import pytest
from pydantic import ValidationError

from mailbot.config import ConfigError, ImapConfig, SmtpConfig
from mailbot.diagnose import check_imap, check_smtp
from mailbot.mailbox import Mailbox, MailboxError
from mailbot.oauth import (
    CachedTokens,
    GoogleTokens,
    MicrosoftTokens,
    OAuthConfig,
    OAuthError,
    OAuthTokens,
    xoauth2_base64,
    xoauth2_string,
)
from tests.tlsservers import (
    ConfiguredDovecot,
    IdentityProvider,
    ServerCert,
    SmtpTest,
    TestCA,
    service_account_key,
)

MAILBOX = "council@example.org"
T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("oauth-ca"))


@pytest.fixture(scope="module")
def cert(ca: TestCA) -> ServerCert:
    return ca.good()


@pytest.fixture
def idp(cert: ServerCert) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(mailbox=MAILBOX)
    provider.serve(cert)
    yield provider
    provider.stop()


def microsoft(idp: IdentityProvider, ca: TestCA, clock: Clock, **kw: object) -> MicrosoftTokens:
    args: dict = {"authority": idp.url, "ca_file": str(ca.path), "now": clock}
    args.update(kw)
    secret = str(args.pop("secret", idp.client_secret))
    return MicrosoftTokens(idp.tenant, idp.client_id, secret, **args)


def token_posts(idp: IdentityProvider) -> int:
    return sum(1 for r in idp.requests if r.startswith("POST") and r.endswith("/token"))


# --- the SASL string ----------------------------------------------------------------------


def test_xoauth2_string_is_the_documented_format() -> None:
    assert xoauth2_string("a@b.org", "ya29.x") == "user=a@b.org\x01auth=Bearer ya29.x\x01\x01"
    # Google's documented example (base64 of the string above, for their sample values).
    sample = xoauth2_base64("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert sample == (
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
        "YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )
    with pytest.raises(OAuthError, match="control character"):
        xoauth2_string("a@b.org\r\nA1 LOGOUT", "t")


# --- config -------------------------------------------------------------------------------


def test_config_requires_what_each_provider_needs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="tenant_id: required"):
        OAuthConfig.model_validate({"provider": "microsoft", "client_id": "x"})
    with pytest.raises(ValidationError, match="client_secret_file: provider"):
        OAuthConfig.model_validate({"provider": "microsoft", "tenant_id": "t", "client_id": "x"})
    with pytest.raises(ValidationError, match="client_secret: secrets must not be in the config"):
        OAuthConfig.model_validate({"provider": "microsoft", "client_secret": "hunter2"})
    with pytest.raises(ValidationError, match="service_account_file: required"):
        OAuthConfig.model_validate({"provider": "google"})
    with pytest.raises(ValidationError, match='tenant_id: only for provider = "microsoft"'):
        OAuthConfig.model_validate(
            {"provider": "google", "service_account_file": "k.json", "tenant_id": "t"}
        )
    with pytest.raises(ValidationError, match="provider"):
        OAuthConfig.model_validate({"provider": "yahoo"})


def test_client_secret_from_file_credentials_dir_or_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = {"provider": "microsoft", "tenant_id": "t", "client_id": "c"}
    (tmp_path / "ms-secret").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = OAuthConfig.model_validate({**base, "client_secret_file": "ms-secret"})
    assert cfg.client_secret() == "s3cret"
    monkeypatch.setenv("MS_SECRET", "from-env")
    assert OAuthConfig.model_validate({**base, "client_secret_env": "MS_SECRET"}).client_secret()
    (tmp_path / "ms-secret").write_text("\n")
    with pytest.raises(ConfigError, match=r"oauth.client_secret_file: .*ms-secret is empty"):
        cfg.client_secret()
    bad_key = tmp_path / "key.json"
    bad_key.write_text('{"type": "service_account"}')
    google = OAuthConfig.model_validate({"provider": "google", "service_account_file": bad_key})
    with pytest.raises(ConfigError, match=r"not a service account key \(no client_email"):
        google.service_account_info()


# --- the cache, whatever the provider -----------------------------------------------------


class Scripted(CachedTokens):
    """Answers from a list: a (token, lifetime) or an OAuthError to raise."""

    def __init__(self, answers: list, clock: Clock) -> None:
        super().__init__(margin=timedelta(minutes=10), now=clock)
        self.answers = answers

    def _fetch(self) -> tuple[str, timedelta]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_renewed_ahead_of_expiry_and_failures_recorded_until_a_renewal_works() -> None:
    clock = Clock()
    hour = timedelta(hours=1)
    tokens = Scripted(
        [("one", hour), OAuthError("down"), OAuthError("still down"), ("two", hour)], clock
    )
    assert tokens.token() == "one"
    clock.at = T0 + timedelta(minutes=49)
    assert tokens.token() == "one"  # 11 minutes left: no request
    clock.at = T0 + timedelta(minutes=50)
    # Renewal fails, but the current token has ten minutes left: keep working with it.
    assert tokens.token() == "one"
    assert tokens.failing_since == T0 + timedelta(minutes=50)
    assert tokens.last_error == "down"
    clock.at = T0 + timedelta(minutes=59, seconds=30)
    with pytest.raises(OAuthError, match="still down"):
        tokens.token()  # 30 s left is too little to sign in with
    assert tokens.failing_since == T0 + timedelta(minutes=50)  # the first failure, kept
    clock.at = T0 + timedelta(minutes=61)
    assert tokens.token() == "two"
    assert tokens.failing_since is None and tokens.last_error == ""
    assert tokens.expires_at == clock.at + hour


# --- Microsoft 365, against a local stand-in ------------------------------------------------


def test_microsoft_client_credentials_cached_then_renewed(
    idp: IdentityProvider, ca: TestCA
) -> None:
    clock = Clock()
    tokens = microsoft(idp, ca, clock)
    first = tokens.token()
    assert idp.valid(first) and token_posts(idp) == 1
    # The OpenID configuration is read from the authority given, not from Microsoft.
    assert idp.requests[0] == f"GET /{idp.tenant}/v2.0/.well-known/openid-configuration"
    clock.at = T0 + timedelta(minutes=30)
    assert tokens.token() == first and token_posts(idp) == 1
    clock.at = T0 + timedelta(minutes=51)  # inside the ten-minute margin
    second = tokens.token()
    # msal's own cache would have handed back the first token; ours asks again.
    assert second != first and token_posts(idp) == 2
    assert tokens.expires_at == clock.at + timedelta(hours=1)


def test_microsoft_wrong_secret_and_unknown_tenant(idp: IdentityProvider, ca: TestCA) -> None:
    tokens = microsoft(idp, ca, Clock(), secret="the-secret-id-not-its-value")
    with pytest.raises(OAuthError) as caught:
        tokens.token()
    assert str(caught.value) == (
        "Microsoft sign-in refused (AADSTS7000215): the client secret is wrong: copy the "
        "secret's Value (not its ID) again"
    )
    assert tokens.failing_since == T0

    wrong_tenant = MicrosoftTokens(
        "no-such-tenant", idp.client_id, idp.client_secret, authority=idp.url, ca_file=str(ca.path)
    )
    with pytest.raises(OAuthError) as caught:
        wrong_tenant.token()
    assert str(caught.value) == (
        f"Microsoft sign-in: tenant not found at {idp.url}/no-such-tenant: check oauth.tenant_id"
    )


def test_microsoft_endpoint_not_trusted_or_unreachable(idp: IdentityProvider, ca: TestCA) -> None:
    untrusted = microsoft(idp, ca, Clock(), ca_file=None)
    with pytest.raises(OAuthError, match=r"cannot reach https://127\.0\.0\.1:.*CERTIFICATE_VERIFY"):
        untrusted.token()
    idp.stop()
    with pytest.raises(OAuthError, match="Microsoft sign-in: cannot reach"):
        microsoft(idp, ca, Clock()).token()


# --- Google Workspace ---------------------------------------------------------------------


def test_google_service_account_with_delegation(idp: IdentityProvider, ca: TestCA) -> None:
    info, public = service_account_key()
    idp.google_public_pem, idp.google_user = public, MAILBOX
    url = f"{idp.url}/google/token"
    tokens = GoogleTokens(info, MAILBOX, token_uri=url, ca_file=str(ca.path), now=Clock())
    token = tokens.token()
    assert idp.issued[token] == MAILBOX  # delegated to the mailbox, not the service account
    assert tokens.expires_at is not None
    assert timedelta(minutes=58) < tokens.expires_at - T0 <= timedelta(hours=1)

    other = GoogleTokens(info, "someone@example.org", token_uri=url, ca_file=str(ca.path))
    with pytest.raises(OAuthError) as caught:
        other.token()
    assert str(caught.value).startswith(
        "Google sign-in refused (unauthorized_client): domain-wide delegation is not granted"
    )


def test_tokens_from_config_one_per_user_for_google_only(
    idp: IdentityProvider, ca: TestCA, tmp_path: Path
) -> None:
    secret = tmp_path / "ms-secret"
    secret.write_text(idp.client_secret)
    cfg = OAuthConfig.model_validate(
        {
            "provider": "microsoft",
            "tenant_id": idp.tenant,
            "client_id": idp.client_id,
            "client_secret_file": secret,
            "authority": idp.url,
            "ca_file": ca.path,
        }
    )
    tokens = OAuthTokens(cfg)
    assert tokens.for_user(MAILBOX) is tokens.for_user("foi@example.org")  # app-only token
    assert idp.valid(tokens.for_user(MAILBOX).token())

    info, _ = service_account_key()
    key = tmp_path / "key.json"
    key.write_text(json.dumps(info))
    google = OAuthTokens(OAuthConfig(provider="google", service_account_file=key))
    assert google.for_user(MAILBOX) is not google.for_user("foi@example.org")
    assert google.for_user("COUNCIL@example.org") is google.for_user(MAILBOX)


# --- XOAUTH2 logins -----------------------------------------------------------------------


@pytest.fixture
def oauth_dovecot(idp: IdentityProvider) -> Iterator[ConfiguredDovecot]:
    """A real Dovecot whose oauth2 passdb asks the stand-in IdP about each token."""
    introspect = idp.serve()  # plain HTTP on loopback, as Dovecot's client is set up here
    server = ConfiguredDovecot(user=MAILBOX, introspection_url=f"{introspect}/introspect")
    server.start()
    yield server
    server.cleanup()


def oauth_cfg(idp: IdentityProvider, ca: TestCA, tmp_path: Path) -> OAuthConfig:
    secret = tmp_path / "ms-secret"
    secret.write_text(idp.client_secret)
    return OAuthConfig.model_validate(
        {
            "provider": "microsoft",
            "tenant_id": idp.tenant,
            "client_id": idp.client_id,
            "client_secret_file": secret,
            "authority": idp.url,
            "ca_file": ca.path,
        }
    )


@pytest.mark.integration
def test_imap_xoauth2_with_dovecot_across_a_renewal(
    idp: IdentityProvider, ca: TestCA, oauth_dovecot: ConfiguredDovecot, tmp_path: Path
) -> None:
    clock = Clock()
    tokens = OAuthTokens(oauth_cfg(idp, ca, tmp_path), now=clock)
    imap = ImapConfig(
        host="127.0.0.1",
        port=oauth_dovecot.port,
        security="none",
        username=MAILBOX,
        auth="xoauth2",
        timeout=10,
    )
    provider = tokens.for_user(MAILBOX)
    first = provider.token()
    mailbox = Mailbox(imap, first)
    mailbox.connect()
    mailbox.close()

    clock.at = T0 + timedelta(minutes=55)
    second = provider.token()
    assert second != first
    idp.revoked.add(first)  # the old token is dead now, as it would be after expiry
    with pytest.raises(MailboxError, match="AUTHENTICATIONFAILED"):
        Mailbox(imap, first).connect()
    mailbox = Mailbox(imap, provider.token())
    mailbox.connect()
    mailbox.close()

    found = check_imap(imap, tokens)
    assert [(f.step, f.ok) for f in found] == [
        ("imap dns", True),
        ("imap tcp", True),
        ("imap tls", True),
        ("imap token", True),
        ("imap login", True),
        ("imap folder inbox", True),
    ]
    assert found[3].message.startswith("access token from microsoft, valid until")

    idp.revoked.add(second)  # e.g. the app's IMAP.AccessAsApp consent withdrawn
    last = check_imap(imap, tokens)[-1]
    assert (last.step, last.ok) == ("imap login", False)
    assert "IMAP.AccessAsApp" in last.hint


@pytest.mark.integration
def test_smtp_xoauth2_against_aiosmtpd(
    idp: IdentityProvider, ca: TestCA, cert: ServerCert, tmp_path: Path
) -> None:
    server = SmtpTest("starttls", cert, user=MAILBOX, idp=idp).start()
    try:
        tokens = OAuthTokens(oauth_cfg(idp, ca, tmp_path))
        smtp = SmtpConfig(
            host="127.0.0.1",
            port=server.port,
            security="starttls",
            username=MAILBOX,
            auth="xoauth2",
            ca_file=ca.path,
            timeout=10,
        )
        found = check_smtp(smtp, MAILBOX, tokens)
        assert [(f.step, f.ok) for f in found][-3:] == [
            ("smtp token", True),
            ("smtp login", True),
            ("smtp relay", True),
        ]
        assert "AUTH XOAUTH2" in server.commands

        # aiosmtplib's own XOAUTH2 (what the outbox can use) passes the same check.
        token = tokens.for_user(MAILBOX).token()

        async def send_login(value: str) -> None:
            client = aiosmtplib.SMTP(
                hostname="127.0.0.1", port=server.port, start_tls=True, cert_bundle=str(ca.path)
            )
            await client.connect()
            try:
                await client.auth_xoauth2(MAILBOX, value)
            finally:
                client.close()

        asyncio.run(send_login(token))
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            asyncio.run(send_login("forged"))

        idp.revoked.add(token)
        last = check_smtp(smtp, MAILBOX, tokens)[-1]
        assert (last.step, last.ok) == ("smtp login", False)
        assert last.message.startswith(f"the SMTP server refused the login for {MAILBOX}: 535")
        assert "SMTP.SendAsApp" in last.hint
    finally:
        server.stop()


def test_xoauth2_without_an_oauth_table_is_a_finding(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        imap = ImapConfig(
            host="127.0.0.1",
            port=listener.getsockname()[1],
            security="none",
            username=MAILBOX,
            auth="xoauth2",
        )
        last = check_imap(imap)[-1]
    assert (last.step, last.ok) == ("imap token", False)
    assert last.message == 'imap.auth = "xoauth2" but there is no [oauth] table'


def test_base64_matches_what_servers_decode() -> None:
    decoded = base64.b64decode(xoauth2_base64(MAILBOX, "tok")).decode()
    assert decoded.split("\x01")[:2] == [f"user={MAILBOX}", "auth=Bearer tok"]


# --- the metrics ---------------------------------------------------------------------------


def test_the_sign_in_token_s_expiry_is_served_to_prometheus(
    idp: IdentityProvider, ca: TestCA, tmp_path: Path
) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from mailbot.app import App
    from mailbot.clock import FixedClock
    from mailbot.config import load_config
    from mailbot.devservers import Account, SmtpCapture, local_config
    from mailbot.metrics import DaemonFigures, registry_for
    from mailbot.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    config = local_config(tmp_path, Account(1, MAILBOX, "x"), SmtpCapture(), database_url=url)
    upgrade(url)
    app = App.load(load_config(config), FixedClock(T0))
    secret = tmp_path / "ms-secret"
    secret.write_text(idp.client_secret)
    cfg = OAuthConfig.model_validate(
        {
            "provider": "microsoft",
            "tenant_id": idp.tenant,
            "client_id": idp.client_id,
            "client_secret_file": secret,
            "authority": idp.url,
            "ca_file": ca.path,
        }
    )
    app.tokens = OAuthTokens(cfg)

    def served() -> dict[str, list[tuple[dict[str, str], float]]]:
        text = generate_latest(registry_for(app, DaemonFigures())).decode()
        found: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append((sample.labels, sample.value))
        return found

    before = served()
    assert "mailbot_oauth_token_expiry_timestamp_seconds" not in before  # none asked for yet
    assert before["mailbot_oauth_renewal_failing"] == [({}, 0.0)]
    app.tokens.for_user(MAILBOX).token()
    expires = app.tokens.for_user(MAILBOX).expires_at
    assert expires is not None
    assert served()["mailbot_oauth_token_expiry_timestamp_seconds"] == [
        ({"user": "app"}, expires.timestamp())  # Microsoft's token is the app's
    ]
    app.engine.dispose()
