"""Configuration: load and validate mailbot.toml (SPEC §3); secrets come from files or env."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mailbot.parse import valid_address

SEARCH_PATHS = (Path("mailbot.toml"), Path("/etc/mailbot/mailbot.toml"))


class ConfigError(Exception):
    """A config problem, worded as one line naming the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _email(value: str) -> str:
    addr = valid_address(value)
    if addr is None:
        raise ValueError(f"not an email address: {value!r}")
    return addr


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServerConfig(_Strict):
    host: str = Field(min_length=1)
    port: Annotated[int, Field(ge=1, le=65535)]
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = ""
    auth: Literal["password", "xoauth2"] = "password"
    password_file: Path | None = None
    password_env: str | None = None
    timeout: Annotated[float, Field(gt=0, le=600)] = 60.0
    ca_file: Path | None = None  # a private CA for the server's certificate

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("password", "pass", "secret"):
                if key in data:
                    raise ValueError(
                        f"{key}: passwords must not be in the config file; "
                        "use password_file or password_env"
                    )
        return data

    @model_validator(mode="after")
    def _check(self) -> ServerConfig:
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(
                'security: "none" sends passwords in clear text; only allowed for loopback hosts'
            )
        if self.password_file and self.password_env:
            raise ValueError("password_file: give password_file or password_env, not both")
        return self

    def password(self) -> str:
        """The secret, read when needed so it never sits in the config object or logs."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"password_env: variable {self.password_env} is not set")
            return value
        if self.password_file:
            path = self.password_file
            if not path.is_absolute() and os.environ.get("CREDENTIALS_DIRECTORY"):
                path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / path  # systemd LoadCredential
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"password_file: cannot read {path}: {exc.strerror}") from exc
        return ""


class ImapConfig(ServerConfig):
    port: Annotated[int, Field(ge=1, le=65535)] = 993
    inbox: str = "INBOX"
    sent: str | None = None
    start_from: datetime | None = None
    idle_seconds: Annotated[int, Field(ge=10, le=600)] = 540  # re-issue IDLE before 10 minutes
    max_message_mb: Annotated[int, Field(ge=1, le=200)] = 25
    default_category: str | None = None

    @field_validator("start_from")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("start_from needs a timezone, e.g. 2026-11-01T00:00:00Z")
        return value


class SmtpConfig(ServerConfig):
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["tls", "starttls", "none"] = "starttls"


class CouncilConfig(_Strict):
    name: str = Field(min_length=1)
    policy: str = "stafford"
    mailbox_address: str
    timezone: str = "Europe/London"
    templates: Path | None = None

    _address = field_validator("mailbox_address")(classmethod(lambda cls, v: _email(v)))

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value


class DatabaseConfig(_Strict):
    url: str = "sqlite:///mailbot.db"


class ScreeningConfig(_Strict):
    acknowledgements_per_sender_per_day: Annotated[int, Field(ge=1, le=100)] = 3


class OfficerConfig(_Strict):
    name: str = Field(min_length=1)
    email: str
    phone: str = ""
    roles: list[str] = Field(min_length=1)

    _address = field_validator("email")(classmethod(lambda cls, v: _email(v)))


class Config(_Strict):
    council: CouncilConfig
    imap: ImapConfig
    smtp: SmtpConfig
    database: DatabaseConfig = DatabaseConfig()
    screening: ScreeningConfig = ScreeningConfig()
    officers: list[OfficerConfig] = Field(min_length=1)
    source: Path | None = None

    @model_validator(mode="after")
    def _unique_officers(self) -> Config:
        seen: set[str] = set()
        for officer in self.officers:
            if officer.email in seen:
                raise ValueError(f"officers: {officer.email} is listed twice")
            seen.add(officer.email)
        return self

    def officers_with(self, role: str) -> list[OfficerConfig]:
        return [o for o in self.officers if role in o.roles]

    def officer(self, email: str) -> OfficerConfig | None:
        email = email.lower()
        return next((o for o in self.officers if o.email == email), None)

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset({self.council.mailbox_address, *(o.email for o in self.officers)})


def find_config(explicit: str | None) -> Path:
    """--config, else $MAILBOT_CONFIG, else ./mailbot.toml, else /etc/mailbot/mailbot.toml."""
    if explicit:
        return Path(explicit)
    if os.environ.get("MAILBOT_CONFIG"):
        return Path(os.environ["MAILBOT_CONFIG"])
    for path in SEARCH_PATHS:
        if path.exists():
            return path
    raise ConfigError("no config file: give --config, set MAILBOT_CONFIG or create ./mailbot.toml")


def load_config(path: Path) -> Config:
    """Read and validate a config file; every problem is a ConfigError naming file and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return Config.model_validate({**data, "source": path})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_error(exc, text)}") from exc


def describe_error(exc: ValidationError, text: str) -> str:
    """The first validation problem as 'line N: dotted.key: message'."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key (check the spelling)"
    elif err["type"] == "missing":
        message = "required key is missing"
    # A check on a whole table names the key it is about at the start of its message.
    head, sep, rest = message.partition(": ")
    if sep and err["type"] == "value_error" and head.isidentifier():
        loc.append(head)
        message = rest
    key = ".".join(loc) or "(top level)"
    line = line_of_key(text, loc)
    return f"{'line ' + str(line) + ': ' if line else ''}{key}: {message}"


def line_of_key(text: str, loc: list[str]) -> int | None:
    """Best-effort line number of a dotted key in TOML text: the table, then the key in it."""
    lines = text.splitlines()
    keys = [part for part in loc if not part.isdigit()]
    if not keys:
        return None
    table_line = 0
    for depth in range(len(keys) - 1, 0, -1):
        header = ".".join(keys[:depth])
        for number, line in enumerate(lines, 1):
            if line.strip() in (f"[{header}]", f"[[{header}]]"):
                table_line = number
                break
        if table_line:
            break
    for number, line in enumerate(lines[table_line:], table_line + 1):
        stripped = line.strip()
        if stripped.startswith("["):
            break  # the next table: the key is not written out (missing)
        if stripped.split("=")[0].strip().strip('"') == keys[-1]:
            return number
    return table_line or None
