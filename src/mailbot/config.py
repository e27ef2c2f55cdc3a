"""Configuration: load and validate mailbot.toml (SPEC §3); secrets come from files or env."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mailbot.calendar import usable_year, years_usable
from mailbot.classify import Category
from mailbot.errors import ConfigError
from mailbot.oauth import OAuthConfig
from mailbot.parse import clean_text, valid_address
from mailbot.secretfile import read_secret_file
from mailbot.web.settings import WebConfig, parse_listen

SEARCH_PATHS = (Path("mailbot.toml"), Path("/etc/mailbot/mailbot.toml"))
MAX_CONFIG_BYTES = 1_000_000


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
    section: ClassVar[str] = "server"  # the table name, for error messages
    _label: str = PrivateAttr("")  # where it was written, e.g. "mailboxes.0", if not `section`
    _folder: Path | None = PrivateAttr(None)  # the config file's folder

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

    @property
    def ca_path(self) -> str | None:
        """ca_file, a relative one found beside the config file (as password_file is)."""
        if self.ca_file is None:
            return None
        if self.ca_file.is_absolute() or self._folder is None:
            return str(self.ca_file)
        return str(self._folder / self.ca_file)

    @property
    def key_prefix(self) -> str:
        """Where its settings are written: "imap", "smtp", "mailboxes.1" …"""
        return self._label or self.section

    def password(self) -> str:
        """The secret, read when needed so it never sits in the config object or logs."""
        return read_secret(self.key_prefix, self.password_file, self.password_env, self._folder)


def read_secret(
    where: str, password_file: Path | None, password_env: str | None, folder: Path | None
) -> str:
    """A secret from its variable or file (a relative file in $CREDENTIALS_DIRECTORY, where
    systemd's LoadCredential= puts it, else beside the config); "" if neither is given.
    Problems name the key: `where` is the table, e.g. "smtp"."""
    if password_env:
        key = f"{where}.password_env"
        value = os.environ.get(password_env)
        if value is None:
            raise ConfigError(f"{key}: variable {password_env} is not set")
        if not value.strip():
            raise ConfigError(f"{key}: variable {password_env} is empty")
        return value.strip()
    if password_file:
        return read_secret_file(f"{where}.password_file", password_file, folder)
    return ""


class ImapConfig(ServerConfig):
    """A mailbox to read: [imap] itself, or a [[mailboxes]] entry."""

    section: ClassVar[str] = "imap"

    # The mailbox's own address: From and Reply-To of everything about the cases it
    # opens. [imap] defaults to [council] mailbox_address; [[mailboxes]] must say.
    address: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 993
    inbox: str = "INBOX"
    # The folder read for officers' replies. Not given, or not on the server: the one the
    # server marks as the sent folder (RFC 6154 \\Sent). "" reads none.
    sent: str | None = None
    start_from: datetime | None = None
    idle_seconds: Annotated[int, Field(ge=10, le=600)] = 540  # re-issue IDLE before 10 minutes
    # Bigger messages are fetched only this far: headers and the typed text come first,
    # and a case never needs the attachments.
    max_message_mb: Annotated[int, Field(ge=1, le=200)] = 10
    # What a message no rule recognises becomes, for a mailbox such as foi@.
    default_category: Category | None = None
    # Email the clerk when no mailbox check has succeeded for this long (SPEC §3.1).
    alert_after_minutes: Annotated[int, Field(ge=5, le=1440)] = 30

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else _email(value)

    @field_validator("start_from")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("start_from needs a timezone, e.g. 2026-11-01T00:00:00Z")
        if value is not None and not usable_year(value):
            raise ValueError(f"start_from must be in the years {years_usable()}")
        return value


class SmtpConfig(ServerConfig):
    section: ClassVar[str] = "smtp"

    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["tls", "starttls", "none"] = "starttls"
    # Messages handed to the server at once, one a connection. More clear a backlog
    # sooner; a crash can leave as many 'uncertain' (Microsoft 365 allows 3 per mailbox).
    connections: Annotated[int, Field(ge=1, le=10)] = 1
    # Whether the provider files what it was handed in the mailbox's sent folder itself
    # (Microsoft 365 and Google do): then mailbot files no copy of its own, and a message
    # left 'uncertain' by a crash mid-hand-over is looked for there (sentcopy.py). Not
    # given: true for Microsoft 365's and Google's SMTP servers, false otherwise.
    provider_keeps_copy: bool | None = None
    # How long after a hand-over was begun its copy may take to show in the sent folder:
    # not there by then, the server never took it, and it is sent (once).
    copy_grace_minutes: Annotated[int, Field(ge=1, le=1440)] = 10

    @property
    def keeps_copy(self) -> bool:
        """provider_keeps_copy, or what the server's name says when it is not given."""
        if self.provider_keeps_copy is not None:
            return self.provider_keeps_copy
        return provider_keeps_copy(self.host)


# SMTP servers that file what they are handed in the sender's sent folder themselves.
COPY_KEEPING_SERVERS = ("smtp.office365.com", "outlook.office365.com", "smtp.gmail.com")


def provider_keeps_copy(host: str) -> bool:
    host = host.lower().rstrip(".")
    # A tenant's own MX endpoint for SMTP relay (…mail.protection.outlook.com) files no
    # copy: it is a relay, not the mailbox's own submission.
    return host in COPY_KEEPING_SERVERS


class MetricsConfig(_Strict):
    """[metrics]: OpenMetrics for Prometheus, served by `mailbot run` (metrics.py)."""

    listen: str | None = None  # e.g. "127.0.0.1:9325"; not given, no endpoint

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        return None if self.listen is None else parse_listen(self.listen)

    def warnings(self) -> list[str]:
        """What `mailbot check` and the daemon say about this table, one line each."""
        address = self.address
        if address is None or is_loopback(address[0]):
            return []
        return [
            f"metrics.listen: {address[0]} can be reached from other machines; the figures "
            "name no resident, but they name the mailboxes and the load: let only "
            "Prometheus reach the port (a firewall), or listen on 127.0.0.1"
        ]


class CouncilConfig(_Strict):
    name: str = Field(min_length=1)
    policy: str = "stafford"
    mailbox_address: str
    timezone: str = "Europe/London"
    templates: Path | None = None
    # Shadow mode (shadow.py): read and decide everything, send residents and officers
    # nothing. `mailbot run --shadow` / `--no-shadow` win over it.
    shadow: bool = False

    _address = field_validator("mailbox_address")(classmethod(lambda cls, v: _email(v)))

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown timezone {value!r} (e.g. Europe/London)") from exc
        return value


class DatabaseConfig(_Strict):
    url: str = "sqlite:///mailbot.db"
    # The database password, never in `url` (as for the mail servers).
    password_file: Path | None = None
    password_env: str | None = None
    _folder: Path | None = PrivateAttr(None)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL: use sqlite:////var/lib/mailbot/mailbot.db or "
                "postgresql+psycopg://mailbot@dbhost/mailbot"
            ) from None
        if url.password is not None:
            raise ValueError(
                "a password must not be in the config file: take it out of the URL and "
                "use database.password_file or database.password_env"
            )
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"{url.get_backend_name()!r}: mailbot runs on sqlite or postgresql")
        try:
            url.get_dialect().import_dbapi()
        except (NoSuchModuleError, ImportError) as exc:
            raise ValueError(f"driver {url.drivername!r} is not installed: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> DatabaseConfig:
        if self.password_file and self.password_env:
            raise ValueError("password_file: give password_file or password_env, not both")
        return self

    def connection_url(self) -> str:
        """`url` with its password (read now, from its file or variable) put in."""
        if not (self.password_file or self.password_env):
            return self.url
        from sqlalchemy.engine import make_url

        secret = read_secret("database", self.password_file, self.password_env, self._folder)
        return make_url(self.url).set(password=secret).render_as_string(hide_password=False)


# Mail providers many residents share: a day's mail from one of them is ordinary, so
# only the per-address cap applies to them, not the per-domain one.
LARGE_PROVIDERS = (
    "aol.com", "btinternet.com", "btopenworld.com", "gmail.com", "googlemail.com",
    "hotmail.co.uk", "hotmail.com", "icloud.com", "live.co.uk", "live.com", "me.com",
    "msn.com", "ntlworld.com", "outlook.com", "proton.me", "protonmail.com", "sky.com",
    "talktalk.net", "virginmedia.com", "yahoo.co.uk", "yahoo.com",
)  # fmt: skip


class ScreeningConfig(_Strict):
    acknowledgements_per_sender_per_day: Annotated[int, Field(ge=1, le=100)] = 3
    # Acknowledgements to one domain in 24 hours: forged senders at one organisation
    # (alice@, bob@, ticket-123@ …) cannot make the council mail it without end.
    acknowledgements_per_domain_per_day: Annotated[int, Field(ge=1, le=10_000)] = 20
    # Domains the per-domain cap leaves alone (webmail: many residents, one domain).
    large_providers: list[str] = list(LARGE_PROVIDERS)

    @field_validator("large_providers")
    @classmethod
    def _domains(cls, values: list[str]) -> list[str]:
        from mailbot.addresses import domain_of  # as the pipeline compares them

        return [domain_of(f"x@{value.strip().lstrip('@')}") for value in values]

    # A message from someone we acknowledged this recently, with nothing tying it to a
    # case, joins their case as a follow-up instead of opening another: the "forgot the
    # attachment" resend, and the auto-responder that answers our acknowledgement with no
    # threading headers (which would otherwise be acknowledged up to the daily cap).
    # 0 turns this off.
    follow_up_minutes: Annotated[int, Field(ge=0, le=1440)] = 15


TRUST_MODES = ("microsoft365", "google", "authserv", "relays")
_HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.?$")


class CommandsConfig(_Strict):
    """How mailbot knows an officer's mail (a #command, a reply that marks a case
    responded) really came from that officer (trust.py; README, Officers)."""

    # microsoft365 | google | authserv | relays; unset, nothing an officer mails is trusted
    # (only the mailbox's sent folder is).
    trust: Literal["microsoft365", "google", "authserv", "relays"] | None = None
    # trust = "authserv": the council's border server's id at the start of the
    # Authentication-Results it adds (e.g. "mx.council.example.gov.uk").
    authserv_id: str | None = None
    # trust = "relays": the council's own relays as its border server records them: IP
    # addresses, networks ("10.0.0.0/8") or whole host names (reverse DNS).
    internal_relays: list[str] = []

    @field_validator("authserv_id")
    @classmethod
    def _authserv_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _HOST_NAME.match(value.strip()):
            raise ValueError(f"not a server name: {value!r} (e.g. mx.council.example.gov.uk)")
        return value.strip().lower().rstrip(".")

    @field_validator("internal_relays")
    @classmethod
    def _relays(cls, values: list[str]) -> list[str]:
        for value in values:
            text = value.strip()
            if not text:
                raise ValueError("an empty name would match nothing the server records")
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                if not _HOST_NAME.match(text):
                    raise ValueError(
                        f"not an IP address, network or whole host name: {value!r}"
                    ) from None
        return [value.strip().lower().rstrip(".") for value in values]

    @model_validator(mode="after")
    def _one_mode(self) -> CommandsConfig:
        if self.trust is None and self.authserv_id and self.internal_relays:
            raise ValueError(
                "trust: authserv_id and internal_relays are both set; say which one counts "
                'with trust = "authserv" or trust = "relays"'
            )
        if self.trust == "authserv" and not self.authserv_id:
            raise ValueError('authserv_id: trust = "authserv" needs the border server\'s id')
        if self.trust == "relays" and not self.internal_relays:
            raise ValueError('internal_relays: trust = "relays" needs at least one relay')
        if self.trust not in (None, "authserv") and self.authserv_id:
            raise ValueError(f'authserv_id: not used with trust = "{self.trust}"')
        if self.trust not in (None, "relays") and self.internal_relays:
            raise ValueError(f'internal_relays: not used with trust = "{self.trust}"')
        return self

    @property
    def mode(self) -> str | None:
        """The mode in force: `trust`, or the one an older config's keys imply."""
        if self.trust is not None:
            return self.trust
        if self.authserv_id:
            return "authserv"
        return "relays" if self.internal_relays else None

    def warnings(self) -> list[str]:
        """What `mailbot check` should say about this table, one line each."""
        if self.mode is None:
            return [
                "commands.trust: not set, so mailbot cannot tell an officer's mail from a "
                "forgery: #commands and replies copied to the mailbox are refused (the "
                "officer is told); only the sent folder counts. Set it (README: Officers)"
            ]
        if self.trust is None:
            key = "authserv_id" if self.mode == "authserv" else "internal_relays"
            return [f'commands.trust: not set; {key} implies trust = "{self.mode}" (say so)']
        return []


class SpamConfig(_Strict):
    """[spam]: how the council's own spam filter's verdicts are read (SPEC §6)."""

    # Exchange Online's spam confidence level (-1 to 9) at which a message is held as
    # spam. 5 is where Microsoft's own policies begin to call a message spam.
    scl_threshold: Annotated[int, Field(ge=1, le=9)] = 5


# Where a web form's message names the resident, unless its [[forms]] entry says: the
# labels of the fields in the body (case does not matter; a ":" or "?" after them may be
# there or not). "What is your email address?" is GOV.UK Forms' and the GOV.UK Design
# System's wording.
DEFAULT_RESIDENT_FIELDS = (
    "Email",
    "Email address",
    "Your email",
    "Your email address",
    "E-mail",
    "E-mail address",
    "What is your email address?",
)
DEFAULT_NAME_FIELDS = (
    "Name",
    "Full name",
    "Your name",
    "Your full name",
    "What is your name?",
)


def _labels(values: list[str]) -> list[str]:
    for value in values:
        if not value.strip(" :?*\t"):
            raise ValueError("a field label must not be empty")
    return values


class FormConfig(_Strict):
    """A [[forms]] entry: a council web form that mails the inbox. Its messages come from
    a no-reply sender, yet each is a resident's (SPEC §6)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # How the clerk knows the form, in case histories and the digest (default: `from`).
    name: str = ""
    sender: str = Field(alias="from")
    # A regular expression the subject must match (case ignored), for a sender that
    # sends other mail too, or several forms (GOV.UK Forms sends every form's mail).
    subject: str | None = None
    resident_fields: list[str] = Field(default=list(DEFAULT_RESIDENT_FIELDS), min_length=1)
    name_fields: list[str] = list(DEFAULT_NAME_FIELDS)
    # A field whose answer decides the category, through `categories` ([forms.categories]).
    category_field: str | None = None
    categories: dict[str, Category] = {}

    _address = field_validator("sender")(classmethod(lambda cls, v: _email(v)))
    _no_blank_labels = field_validator("resident_fields", "name_fields")(
        classmethod(lambda cls, v: _labels(v))
    )

    @field_validator("subject")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _topic(self) -> FormConfig:
        if self.categories and not self.category_field:
            raise ValueError(
                "categories: give category_field, the field whose answers these map to categories"
            )
        if self.category_field and not self.categories:
            raise ValueError(
                "category_field: needs a [forms.categories] table mapping its answers to "
                'categories, e.g. "Noise nuisance" = "enquiry"'
            )
        if self.category_field is not None and not self.category_field.strip(" :?*"):
            raise ValueError("category_field: a field label must not be empty")
        return self

    @property
    def title(self) -> str:
        return self.name or self.sender


class OfficerConfig(_Strict):
    name: str = Field(min_length=1)
    email: str
    phone: str = ""
    roles: list[str] = Field(min_length=1)

    _address = field_validator("email")(classmethod(lambda cls, v: _email(v)))


# What a [[mailboxes]] entry takes from [imap] when it does not say: the server and how
# to reach it; the sign-in too, unless the entry names its own user. Never the folders.
_INHERITED = frozenset(
    {
        "host",
        "port",
        "security",
        "timeout",
        "ca_file",
        "username",
        "auth",
        "password_file",
        "password_env",
        "start_from",
        "idle_seconds",
        "max_message_mb",
        "alert_after_minutes",
    }
)
_SIGN_IN = frozenset({"auth", "password_file", "password_env"})


class Config(_Strict):
    council: CouncilConfig
    imap: ImapConfig
    # Further mailboxes read by the same mailbot, e.g. foi@ beside enquiries@.
    mailboxes: list[ImapConfig] = []
    smtp: SmtpConfig
    database: DatabaseConfig = DatabaseConfig()
    screening: ScreeningConfig = ScreeningConfig()
    commands: CommandsConfig = CommandsConfig()
    spam: SpamConfig = SpamConfig()
    # The council's web forms that mail the inbox; their residents are answered.
    forms: list[FormConfig] = []
    oauth: OAuthConfig | None = None
    web: WebConfig = WebConfig()  # the clerk's console (`mailbot web`)
    metrics: MetricsConfig = MetricsConfig()  # OpenMetrics for Prometheus (`mailbot run`)
    officers: list[OfficerConfig] = Field(min_length=1)
    source: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _inherit_imap(cls, data: Any) -> Any:
        if not (isinstance(data, dict) and isinstance(data.get("imap"), dict)):
            return data
        entries = data.get("mailboxes")
        if not isinstance(entries, list):
            return data
        base = {k: v for k, v in data["imap"].items() if k in _INHERITED}
        merged = []
        for entry in entries:
            if isinstance(entry, dict):
                inherited = dict(base)
                if "username" in entry:  # another account signs in its own way
                    inherited = {k: v for k, v in inherited.items() if k not in _SIGN_IN}
                entry = {**inherited, **entry}
            merged.append(entry)
        return {**data, "mailboxes": merged}

    @model_validator(mode="after")
    def _files_exist(self) -> Config:
        """Files and folders named in the config are there (relative ones beside it)."""
        folder = self.source.parent if self.source is not None else None
        self.database._folder = folder
        for server in (self.imap, self.smtp, *self.mailboxes):
            server._folder = folder
        self.imap._label = "imap"
        for index, box in enumerate(self.mailboxes):
            box._label = f"mailboxes.{index}"
        for server in (self.imap, self.smtp, *self.mailboxes):
            path = server.ca_path
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{server.key_prefix}.ca_file: no such file: {path}")
        templates = self.templates_dir
        if templates is not None and not templates.is_dir():
            raise ValueError(f"council.templates: no such folder: {templates}")
        return self

    @property
    def templates_dir(self) -> Path | None:
        """The clerk's templates folder, a relative one beside the config file."""
        found = self.council.templates
        if found is None or found.is_absolute() or self.source is None:
            return found
        return self.source.parent / found

    @model_validator(mode="after")
    def _distinct_mailboxes(self) -> Config:
        if self.source is not None:
            for server in (self.imap, self.smtp, *self.mailboxes):
                server._folder = self.source.parent
        self.imap._label = "imap"
        seen_address = {self.address_of(self.imap): "[imap]"}
        seen_folder = {(self.imap.host, self.imap.username, self.imap.inbox): "[imap]"}
        for index, box in enumerate(self.mailboxes):
            box._label = where = f"mailboxes.{index}"
            if box.address is None:
                raise ValueError(f"{where}.address: required key is missing")
            if box.address in seen_address:
                raise ValueError(
                    f"{where}.address: {box.address} is already the address of "
                    f"{seen_address[box.address]}"
                )
            folder = (box.host, box.username, box.inbox)
            if folder in seen_folder:
                raise ValueError(
                    f"{where}.inbox: {box.inbox!r} of {box.username or box.host} is already "
                    f"read by {seen_folder[folder]}"
                )
            seen_address[box.address] = seen_folder[folder] = f"[[mailboxes]] {index + 1}"
        return self

    @model_validator(mode="after")
    def _unique_officers(self) -> Config:
        seen: dict[str, int] = {}
        for index, officer in enumerate(self.officers):
            if officer.email in self.mailbox_addresses:
                raise ValueError(
                    f"officers.{index}.email: {officer.email} is a council mailbox's own "
                    "address; each officer needs an address of their own (mail from the "
                    "mailbox is never taken for an officer's)"
                )
            if officer.email in seen:
                # Named by the second entry's key, so the error points at the duplicate line.
                raise ValueError(
                    f"officers.{index}.email: {officer.email} is listed twice "
                    f"(also officer {seen[officer.email] + 1})"
                )
            seen[officer.email] = index
        return self

    @model_validator(mode="after")
    def _forms_have_their_own_sender(self) -> Config:
        seen: dict[tuple[str, str | None], int] = {}
        for index, form in enumerate(self.forms):
            if form.sender in self.own_addresses:
                raise ValueError(
                    f"forms.{index}.from: {form.sender} is a council mailbox or an officer; "
                    "a form's messages must come from an address of the form's own"
                )
            key = (form.sender, form.subject)
            if key in seen:
                raise ValueError(
                    f"forms.{index}.from: {form.sender} with the same subject is already "
                    f"form {seen[key] + 1}; give each a different subject pattern"
                )
            seen[key] = index
        return self

    @model_validator(mode="after")
    def _oauth_when_needed(self) -> Config:
        servers = [("imap", self.imap), ("smtp", self.smtp)]
        servers += [(f"mailboxes.{n}", box) for n, box in enumerate(self.mailboxes)]
        for name, server in servers:
            if server.auth == "xoauth2" and self.oauth is None:
                raise ValueError(
                    f'{name}.auth: "xoauth2" needs an [oauth] table (provider = "microsoft" '
                    'or "google")'
                )
        return self

    def officers_with(self, role: str) -> list[OfficerConfig]:
        return [o for o in self.officers if role in o.roles]

    def officer(self, email: str) -> OfficerConfig | None:
        email = email.lower()
        return next((o for o in self.officers if o.email == email), None)

    @property
    def all_mailboxes(self) -> list[ImapConfig]:
        """[imap] first, then each [[mailboxes]] entry."""
        return [self.imap, *self.mailboxes]

    def address_of(self, box: ImapConfig) -> str:
        """The address a mailbox's letters come from."""
        return box.address or self.council.mailbox_address

    @property
    def mailbox_addresses(self) -> frozenset[str]:
        return frozenset(self.address_of(box) for box in self.all_mailboxes)

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset({*self.mailbox_addresses, *(o.email for o in self.officers)})


def find_config(explicit: str | None) -> Path:
    """--config, else $MAILBOT_CONFIG, else ./mailbot.toml, else /etc/mailbot/mailbot.toml."""
    if explicit:
        return Path(explicit)
    if os.environ.get("MAILBOT_CONFIG"):
        return Path(os.environ["MAILBOT_CONFIG"])
    for path in SEARCH_PATHS:
        try:
            if path.is_file():
                return path
        except OSError:  # e.g. run as the mailbot user from a folder it cannot read
            continue
    raise ConfigError("no config file: give --config, set MAILBOT_CONFIG or create ./mailbot.toml")


def load_config(path: Path) -> Config:
    """Read and validate a config file; every problem is a ConfigError naming file and key."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ConfigError(f"{path}: not a regular file")
        with path.open("rb") as handle:
            data_bytes = handle.read(MAX_CONFIG_BYTES + 1)  # never more: it may be a device
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data_bytes) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: too large for a config file (over {MAX_CONFIG_BYTES} bytes)")
    try:
        text = data_bytes.decode("utf-8-sig")  # Notepad's byte-order mark is harmless
    except UnicodeDecodeError as exc:
        line = data_bytes[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (save the file as UTF-8)") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_describe_syntax(exc)}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: TOML syntax error: nested too deeply") from None
    if "source" in data:  # a field we fill in ourselves, not a setting
        where = f"line {line_of_key(text, ['source'])}: " if line_of_key(text, ["source"]) else ""
        raise ConfigError(f"{path}: {where}source: unknown key (check the spelling)")
    try:
        return Config.model_validate({**data, "source": path})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_error(exc, text)}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply") from None


def _describe_syntax(exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's message, reworded as 'line N: TOML syntax error: ...'."""
    message = clean_text(str(exc), 200)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        what = message[: found.start()]
        return f"line {found.group(1)}: TOML syntax error: {what} (column {found.group(2)})"
    return f"TOML syntax error: {message.replace('(at end of document)', 'at the end of the file')}"


# Pydantic's wording, made to read as advice about a config file.
_PLAIN_WORDS = {
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "greater_than": "must be more than {gt}",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "string_too_short": "must not be empty",
    "too_short": "needs at least {min_length} entry",
    "string_type": "must be a quoted string",
    "bool_type": "must be true or false",
    "datetime_parsing": "must be a date and time, e.g. 2026-11-01T00:00:00Z",
    "datetime_type": "must be a date and time, e.g. 2026-11-01T00:00:00Z",
    "datetime_from_date_parsing": "must be a date and time, e.g. 2026-11-01T00:00:00Z",
    "path_type": "must be a file path in quotes",
    "model_type": "must be a table of keys, e.g. [{key}] on a line of its own",
    "model_attributes_type": "must be a table of keys, e.g. [{key}] on a line of its own",
}


class _Defaulting(dict):
    """Format values for _PLAIN_WORDS; a missing one reads as '?' rather than raising."""

    def __missing__(self, key: str) -> str:
        return "?"


def describe_error(exc: ValidationError, text: str) -> str:
    """The first validation problem as 'line N: dotted.key: message', on one line."""
    err = exc.errors()[0]
    # Union members and validators add their own names to the location; keep real keys.
    loc = [str(part) for part in err["loc"] if not re.fullmatch(r"[\w-]+\[.*\]", str(part))]
    message = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        message = "unknown key (check the spelling)"
    elif kind == "missing":
        message = "required key is missing"
    elif loc == ["officers"] and kind == "list_type":
        message = "must be a list: write [[officers]] (double brackets) before each officer"
    elif kind in _PLAIN_WORDS:
        values = {"key": ".".join(loc), **(err.get("ctx") or {})}
        message = _PLAIN_WORDS[kind].format_map(_Defaulting(values))
        value = err.get("input")
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            message += f" (got {clean_text(repr(value), 60)})"
    else:
        message = message.replace("Input should be", "must be")
    # A check on a whole table names the key it is about at the start of its message.
    head, sep, rest = message.partition(": ")
    if sep and kind == "value_error" and re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", head):
        loc.extend(head.split("."))
        message = rest
    key = clean_text(".".join(loc), 200) or "(top level)"
    line = line_of_key(text, loc)
    return clean_text(f"{'line ' + str(line) + ': ' if line else ''}{key}: {message}", 500)


_TABLE_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(
    r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
)


def _key_parts(dotted: str) -> list[str]:
    return [
        part.strip().strip("\"'")
        for part in re.split(r"\.(?=(?:[^\"']|\"[^\"]*\"|'[^']*')*$)", dotted)
    ]


def line_of_key(text: str, loc: list[str]) -> int | None:
    """Best-effort line number of a key in TOML text, e.g. ["officers", "1", "email"].

    Tracks the current table (counting [[array]] entries, so officers.1 is the second
    [[officers]] block) and dotted keys. Where the key is not written out (missing), the
    line of the deepest table header on its path.
    """
    target = [str(part) for part in loc]
    if not target:
        return None
    arrays: dict[str, int] = {}
    table: list[str] = []
    table_line: int | None = None
    best = 0  # length of the longest matching table path so far
    for number, line in enumerate(text.split("\n"), 1):  # TOML's lines, not splitlines()'s
        header = _TABLE_HEADER.match(line)
        if header:
            names = _key_parts(header.group(2))
            if header.group(1) == "[[":
                dotted = ".".join(names)
                arrays[dotted] = arrays.get(dotted, -1) + 1
                table = [*names, str(arrays[dotted])]
            elif len(names) > 1 and names[0] in arrays:
                # [forms.categories] after [[forms]] belongs to the last forms entry.
                table = [names[0], str(arrays[names[0]]), *names[1:]]
            else:
                table = names
            if target[: len(table)] == table and len(table) > best:
                best, table_line = len(table), number
            continue
        key = _KEY_LINE.match(line)
        if key is None:
            continue
        full = table + _key_parts(key.group(1))
        if full == target:
            return number
        if full == target[: len(full)] and len(full) > best:
            best, table_line = len(full), number  # an inline table or dotted key on the way
    return table_line
