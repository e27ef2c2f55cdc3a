"""OAuth2 sign-in (XOAUTH2) for Microsoft 365 and Google Workspace: tokens cached, renewed early."""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mailbot.errors import ConfigError

log = logging.getLogger("mailbot.oauth")

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
# App-only access to Exchange Online IMAP and SMTP (IMAP.AccessAsApp, SMTP.SendAsApp).
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"

# Renew this long before a token expires: a login that starts with a token about to lapse
# fails half-way, and a slow identity provider must not make us miss the window.
DEFAULT_MARGIN = timedelta(minutes=10)

_INLINE_SECRETS = ("client_secret", "secret", "password", "private_key", "token")


class OAuthError(Exception):
    """A token could not be obtained; the message is one line, with what to do about it."""


class TokenProvider(Protocol):
    def token(self) -> str:
        """A valid access token, fetched or renewed as needed; raises OAuthError."""
        ...


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Google and Microsoft define it."""
    if any(c in user + token for c in "\x01\r\n"):
        raise OAuthError("user name or token contains a control character")
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def xoauth2_base64(user: str, token: str) -> str:
    return base64.b64encode(xoauth2_string(user, token).encode()).decode("ascii")


# --- config ----------------------------------------------------------------------------


class OAuthConfig(BaseModel):
    """The `[oauth]` table: which provider signs us in, and where its secret lives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["microsoft", "google"]
    # Microsoft 365: an app registration in Entra ID with a client secret.
    tenant_id: str | None = Field(default=None, min_length=1)
    client_id: str | None = Field(default=None, min_length=1)
    client_secret_file: Path | None = None
    client_secret_env: str | None = None
    authority: str = MICROSOFT_AUTHORITY  # another cloud (e.g. login.microsoftonline.us)
    # Google Workspace: a service account's JSON key with domain-wide delegation.
    service_account_file: Path | None = None
    token_uri: str | None = None  # default: the key file's own token_uri
    # An extra CA for the token endpoint (a TLS-inspecting proxy; the tests' local server).
    ca_file: Path | None = None
    refresh_margin_minutes: Annotated[int, Field(ge=1, le=50)] = 10
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _INLINE_SECRETS:
                if key in data:
                    raise ValueError(
                        f"{key}: secrets must not be in the config file; "
                        "use client_secret_file or client_secret_env"
                    )
        return data

    @model_validator(mode="after")
    def _complete(self) -> OAuthConfig:
        if self.provider == "microsoft":
            for key in ("tenant_id", "client_id"):
                if getattr(self, key) is None:
                    raise ValueError(f'{key}: required for provider = "microsoft"')
            if not (self.client_secret_file or self.client_secret_env):
                raise ValueError(
                    'client_secret_file: provider = "microsoft" needs client_secret_file '
                    "or client_secret_env"
                )
            if self.client_secret_file and self.client_secret_env:
                raise ValueError(
                    "client_secret_file: give client_secret_file or client_secret_env, not both"
                )
            if self.service_account_file is not None:
                raise ValueError('service_account_file: only for provider = "google"')
            if not self.authority.startswith("https://"):
                raise ValueError("authority: must be an https:// address")
        else:
            if self.service_account_file is None:
                raise ValueError('service_account_file: required for provider = "google"')
            for key in ("tenant_id", "client_secret_file", "client_secret_env"):
                if getattr(self, key) is not None:
                    raise ValueError(f'{key}: only for provider = "microsoft"')
        return self

    @property
    def margin(self) -> timedelta:
        return timedelta(minutes=self.refresh_margin_minutes)

    def client_secret(self) -> str:
        """Read when needed, so the secret never sits in the config object or a log."""
        if self.client_secret_env:
            key = "oauth.client_secret_env"
            value = os.environ.get(self.client_secret_env, "").strip()
            if not value:
                raise _config_error(f"{key}: variable {self.client_secret_env} is not set or empty")
            return value
        if self.client_secret_file:
            return _read_secret("oauth.client_secret_file", self.client_secret_file).strip()
        raise _config_error('oauth.client_secret_file: required for provider = "microsoft"')

    def service_account_info(self) -> dict[str, Any]:
        key = "oauth.service_account_file"
        if self.service_account_file is None:
            raise _config_error(f'{key}: required for provider = "google"')
        text = _read_secret(key, self.service_account_file)
        try:
            info = json.loads(text)
        except ValueError as exc:
            raise _config_error(f"{key}: not a JSON key file: {exc}") from exc
        missing = [
            k
            for k in ("client_email", "private_key")
            if not isinstance(info, dict) or not info.get(k)
        ]
        if missing:
            raise _config_error(
                f"{key}: not a service account key (no {', '.join(missing)}); "
                "download a JSON key for the service account"
            )
        return info


def _config_error(message: str) -> Exception:
    return ConfigError(message)


def _read_secret(key: str, path: Path) -> str:
    if not path.is_absolute() and os.environ.get("CREDENTIALS_DIRECTORY"):
        path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / path  # systemd LoadCredential
    try:
        value = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise _config_error(f"{key}: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise _config_error(f"{key}: {path} is not UTF-8 text") from exc
    if not value.strip():
        raise _config_error(f"{key}: {path} is empty")
    return value


# --- the cache -------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: datetime


class CachedTokens:
    """Keeps one token and renews it `margin` before it expires; thread-safe.

    `failing_since` is the time of the first failed renewal not yet followed by a good
    one (None when all is well): the daemon's health check alerts the clerk on it.
    """

    def __init__(
        self, *, margin: timedelta = DEFAULT_MARGIN, now: Callable[[], datetime] = _utcnow
    ) -> None:
        self.margin = margin
        self.now = now
        self._lock = threading.Lock()
        self._token: Token | None = None
        self.failing_since: datetime | None = None
        self.last_error = ""
        self.refreshes = 0

    @property
    def expires_at(self) -> datetime | None:
        return self._token.expires_at if self._token else None

    def token(self) -> str:
        with self._lock:
            now = self.now()
            if self._token is not None and now < self._token.expires_at - self.margin:
                return self._token.value
            try:
                value, lifetime = self._fetch()
            except OAuthError as exc:
                self.failing_since = self.failing_since or now
                self.last_error = str(exc)
                if self._token is not None and now < self._token.expires_at - timedelta(minutes=1):
                    # The old token still works: use it, but the failure stays recorded
                    # (and alerted on) until a renewal succeeds.
                    log.error("token renewal failed, using the current token: %s", exc)
                    return self._token.value
                log.critical("cannot sign in: %s", exc)
                raise
            self._token = Token(value, now + lifetime)
            self.failing_since, self.last_error = None, ""
            self.refreshes += 1
            log.info("access token renewed; valid until %s", self._token.expires_at.isoformat())
            return value

    def _fetch(self) -> tuple[str, timedelta]:
        raise NotImplementedError


def _lifetime(expires_in: Any) -> timedelta:
    try:
        seconds = int(expires_in)
    except (TypeError, ValueError):
        seconds = 3600  # both providers issue one-hour tokens
    return timedelta(seconds=max(seconds, 60))


# --- Microsoft 365 ---------------------------------------------------------------------

# Entra ID error codes a sysadmin meets, with what to do.
_MICROSOFT_HINTS = {
    "AADSTS7000215": "the client secret is wrong: copy the secret's Value (not its ID) again",
    "AADSTS7000222": "the client secret has expired: create a new one in Entra ID "
    "(App registrations > Certificates & secrets) and update the secret file",
    "AADSTS700016": "no app with this client_id in the tenant: check oauth.client_id "
    "and oauth.tenant_id",
    "AADSTS90002": "tenant not found: check oauth.tenant_id (the Directory (tenant) ID)",
    "AADSTS900023": "oauth.tenant_id is not a valid tenant ID or domain",
    "AADSTS500011": "Exchange Online is not available to this tenant",
}


class MicrosoftTokens(CachedTokens):
    """App-only tokens for Exchange Online by client credentials (msal)."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        authority: str = MICROSOFT_AUTHORITY,
        ca_file: str | None = None,
        timeout: float = 30.0,
        http_client: Any = None,
        margin: timedelta = DEFAULT_MARGIN,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(margin=margin, now=now)
        self.tenant_id, self.client_id = tenant_id, client_id
        self._secret = client_secret
        self.authority = f"{authority.rstrip('/')}/{tenant_id}"
        self._verify: str | bool = ca_file or True
        self._timeout = timeout
        self._http_client = http_client
        self._app: Any = None

    def _client(self) -> Any:
        # Built on first use: msal reads the tenant's OpenID configuration when built.
        if self._app is None:
            import msal
            import requests

            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._secret,
                    authority=self.authority,
                    # The authority is given in full; never ask Microsoft to vouch for it.
                    instance_discovery=False,
                    http_client=self._http_client or _session(self._verify, self._timeout),
                )
            except ValueError as exc:  # tenant discovery refused: unknown tenant
                raise OAuthError(_microsoft_message(str(exc), self.authority)) from exc
            except requests.RequestException as exc:
                raise OAuthError(
                    f"Microsoft sign-in: cannot reach {self.authority}: {_short(exc)}"
                ) from exc
        return self._app

    def _fetch(self) -> tuple[str, timedelta]:
        import requests

        app = self._client()
        # msal keeps its own cache and would hand back the token we are replacing.
        app.remove_tokens_for_client()
        try:
            result = app.acquire_token_for_client(scopes=[MICROSOFT_SCOPE])
        except requests.RequestException as exc:
            raise OAuthError(
                f"Microsoft sign-in: cannot reach {self.authority}: {_short(exc)}"
            ) from exc
        if not isinstance(result, dict) or "access_token" not in result:
            result = result if isinstance(result, dict) else {}
            text = f"{result.get('error', 'no token')}: {result.get('error_description', '')}"
            raise OAuthError(_microsoft_message(text, self.authority))
        return str(result["access_token"]), _lifetime(result.get("expires_in"))


def _microsoft_message(text: str, authority: str) -> str:
    first = _short(text)
    for code, hint in _MICROSOFT_HINTS.items():
        if code in text:
            return f"Microsoft sign-in refused ({code}): {hint}"
    if "OIDC Discovery" in text or "authority configuration" in text:
        return f"Microsoft sign-in: tenant not found at {authority}: check oauth.tenant_id"
    return f"Microsoft sign-in refused: {first}"


# --- Google Workspace ------------------------------------------------------------------

_GOOGLE_HINTS = {
    "unauthorized_client": "domain-wide delegation is not granted: in the Google Admin "
    "console (Security > API controls > Domain-wide delegation) add the service account's "
    f"client ID with the scope {GOOGLE_SCOPE}",
    "invalid_grant": "the key was revoked or deleted, the mailbox user does not exist, or "
    "this server's clock is wrong",
    "invalid_client": "the service account key is not valid: download a new JSON key",
}


class GoogleTokens(CachedTokens):
    """Tokens for one Workspace mailbox by a service account with domain-wide delegation."""

    def __init__(
        self,
        service_account_info: dict[str, Any],
        user: str,
        *,
        token_uri: str | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        margin: timedelta = DEFAULT_MARGIN,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(margin=margin, now=now)
        info = dict(service_account_info)
        info.setdefault("token_uri", GOOGLE_TOKEN_URI)
        if token_uri:
            info["token_uri"] = token_uri
        self.user = user
        self.token_uri = info["token_uri"]
        self._info = info
        self._verify: str | bool = ca_file or True
        self._timeout = timeout

    def _fetch(self) -> tuple[str, timedelta]:
        try:
            import google.auth.exceptions
            from google.auth.transport.requests import Request
            from google.oauth2 import service_account
        except ImportError as exc:
            raise OAuthError(
                'Google sign-in needs the google-auth package: pip install "google-auth[requests]"'
            ) from exc
        try:
            creds = service_account.Credentials.from_service_account_info(
                self._info, scopes=[GOOGLE_SCOPE], subject=self.user
            )
        except (ValueError, KeyError) as exc:
            raise OAuthError(f"Google service account key is not usable: {_short(exc)}") from exc
        session = _session(self._verify, self._timeout)
        request = Request(session=session)

        def timed(*args: Any, **kwargs: Any) -> Any:  # google-auth's default wait is 2 minutes
            kwargs["timeout"] = self._timeout
            return request(*args, **kwargs)

        try:
            creds.refresh(timed)
        except google.auth.exceptions.RefreshError as exc:
            raise OAuthError(_google_message(exc)) from exc
        except google.auth.exceptions.TransportError as exc:
            raise OAuthError(
                f"Google sign-in: cannot reach {self.token_uri}: {_short(exc)}"
            ) from exc
        finally:
            session.close()
        if creds.expiry is not None:  # google-auth gives naive UTC
            lifetime = creds.expiry.replace(tzinfo=UTC) - datetime.now(UTC)
        else:
            lifetime = _lifetime(None)
        return str(creds.token), max(lifetime, timedelta(seconds=60))


def _google_message(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    for code, hint in _GOOGLE_HINTS.items():
        if code in text:
            return f"Google sign-in refused ({code}): {hint}"
    return f"Google sign-in refused: {_short(text)}"


def _session(verify: str | bool, timeout: float) -> Any:
    """A requests session that really uses `verify`: requests lets $REQUESTS_CA_BUNDLE
    override a session's own setting unless it is given with each request."""
    import requests

    session = requests.Session()
    session.verify = verify
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, verify=verify, timeout=timeout
    )
    return session


def _short(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- from the config -------------------------------------------------------------------


class OAuthTokens:
    """The token providers of one configuration, one per mailbox user where that matters."""

    def __init__(self, cfg: OAuthConfig, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.cfg = cfg
        self.now = now
        self._providers: dict[str, CachedTokens] = {}
        self._lock = threading.Lock()

    def for_user(self, user: str) -> CachedTokens:
        # Microsoft's app-only token is for the app, whatever mailbox it opens; Google's
        # delegated token is for one user.
        key = "" if self.cfg.provider == "microsoft" else user.lower()
        with self._lock:
            if key not in self._providers:
                self._providers[key] = make_provider(self.cfg, user, now=self.now)
            return self._providers[key]

    @property
    def failing_since(self) -> datetime | None:
        times = [p.failing_since for p in self._providers.values() if p.failing_since]
        return min(times) if times else None

    @property
    def last_error(self) -> str:
        return next((p.last_error for p in self._providers.values() if p.last_error), "")

    def expiries(self) -> dict[str, datetime]:
        """When each token in use expires, by user ("" for Microsoft's app-wide token)."""
        with self._lock:
            providers = dict(self._providers)
        return {user: p.expires_at for user, p in providers.items() if p.expires_at}


def make_provider(
    cfg: OAuthConfig, user: str, *, now: Callable[[], datetime] = _utcnow
) -> CachedTokens:
    ca = str(cfg.ca_file) if cfg.ca_file else None
    if cfg.provider == "microsoft":
        assert cfg.tenant_id and cfg.client_id  # checked by the model
        return MicrosoftTokens(
            cfg.tenant_id,
            cfg.client_id,
            cfg.client_secret(),
            authority=cfg.authority,
            ca_file=ca,
            timeout=cfg.timeout,
            margin=cfg.margin,
            now=now,
        )
    return GoogleTokens(
        cfg.service_account_info(),
        user,
        token_uri=cfg.token_uri,
        ca_file=ca,
        timeout=cfg.timeout,
        margin=cfg.margin,
        now=now,
    )
