"""The console's settings: `[web]` and `[web.oidc]` in mailbot.toml (no Flask here).

```toml
[web]
listen = "127.0.0.1:8080"          # behind the council's TLS reverse proxy
secret_file = "web-secret"         # signs the session cookies; never in this file
public_url = "https://mailbot.council.example.gov.uk"

[web.oidc]                         # Microsoft Entra ID, Google, or any OpenID provider
issuer = "https://login.microsoftonline.com/TENANT-ID/v2.0"
client_id = "..."
client_secret_file = "oidc-secret"
allowed_domains = ["council.example.gov.uk"]
```
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MIN_SECRET_CHARS = 32
_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https_or_loopback(value: str) -> str:
    """An address the console trusts: https, or plain http to this machine (tests, demo)."""
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value.rstrip("/")
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return value.rstrip("/")
    raise ValueError("must be an https:// address (http:// only on 127.0.0.1)")


def _no_inline_secret(data: Any, keys: tuple[str, ...], use: str) -> Any:
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                raise ValueError(f"{key}: secrets must not be in the config file; use {use}")
    return data


class OidcConfig(_Strict):
    """Single sign-on: an OpenID Connect provider, such as Microsoft Entra ID or Google."""

    # Microsoft Entra ID: https://login.microsoftonline.com/<tenant id>/v2.0
    # Google: https://accounts.google.com
    issuer: str
    client_id: str = Field(min_length=1)
    client_secret_file: Path
    # Only these email domains may sign in (the council's own), and then only people the
    # admin has given a role (or the configured officers, who read their own cases).
    allowed_domains: list[str] = Field(min_length=1)
    # The sign-in button: "Sign in with Microsoft".
    label: str = Field(default="your council account", min_length=1, max_length=60)

    @model_validator(mode="before")
    @classmethod
    def _secret_elsewhere(cls, data: Any) -> Any:
        return _no_inline_secret(data, ("client_secret", "secret"), "client_secret_file")

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _https_or_loopback(value)

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            domain = value.strip().lower().lstrip("@")
            if not _DOMAIN.match(domain):
                raise ValueError(f"not an email domain: {value!r} (e.g. council.example.gov.uk)")
            out.append(domain)
        return out


class WebConfig(_Strict):
    """`[web]`: where the console listens and how it keeps people signed in."""

    listen: str = "127.0.0.1:8080"
    # Random text of at least 32 characters that signs the session cookies; without it a
    # new one is made at each start (everyone signs in again after a restart).
    secret_file: Path | None = None
    # Cookies only over HTTPS. Leave on behind the council's TLS proxy; off only for a
    # console reached as http://127.0.0.1 (the demo).
    secure_cookies: bool = True
    # The address the council's reverse proxy connects from: its X-Forwarded-For, -Proto
    # and -Host are believed (the browser's address for the sign-in limit, https for the
    # cookies); anyone else's are removed. "" when nothing is in front.
    trusted_proxy: str = "127.0.0.1"
    # The address people use, e.g. https://mailbot.council.example.gov.uk: the single
    # sign-on provider sends them back to it. Default: as the proxy reports it.
    public_url: str | None = None
    session_hours: Annotated[int, Field(ge=1, le=24)] = 8
    # Local accounts with passwords (mailbot users add); may be turned off once single
    # sign-on works.
    passwords: bool = True
    oidc: OidcConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _secret_elsewhere(cls, data: Any) -> Any:
        return _no_inline_secret(data, ("secret", "secret_key"), "secret_file")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("trusted_proxy")
    @classmethod
    def _proxy(cls, value: str) -> str:
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        return None if value is None else _https_or_loopback(value)

    @model_validator(mode="after")
    def _some_way_in(self) -> WebConfig:
        if not self.passwords and self.oidc is None:
            raise ValueError("passwords: with passwords = false, add a [web.oidc] table")
        return self

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:8080' or '[::1]:8080' as (host, port); ValueError naming the problem."""
    found = _LISTEN.match(value.strip())
    if not found:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    port = int(found["port"])
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not between 1 and 65535")
    return (found["v6"] or found["host"], port)
