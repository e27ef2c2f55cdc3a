"""Helpers for the console's tests: a council's config with a templates folder and a
policy file of its own (both writable, as the console needs), users, cases, sign-in."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from mailbot.app import App
from mailbot.clock import Clock
from mailbot.config import load_config
from mailbot.devservers import SAMPLE_OFFICERS
from mailbot.migrations import upgrade
from mailbot.store import Case
from mailbot.web import accounts
from mailbot.web.roles import Role

POLICIES = Path(__file__).resolve().parents[1] / "policies"
PASSWORD = "correct horse battery staple"
CLERK = "clerk@council.example.gov.uk"
ADMIN = "admin@council.example.gov.uk"
MANAGER = "manager@council.example.gov.uk"
SAM = "sam.patel@council.example.gov.uk"  # an officer (foi-officer)
ALEX = "alex.morgan@council.example.gov.uk"  # an officer (customer-services)


def web_table(extra: str = "") -> str:
    return f"[web]\nsecure_cookies = false\n{extra}\n"


def prepare(folder: Path) -> tuple[Path, Path]:
    """The council's own templates folder (empty) and a copy of the Stafford policy."""
    templates = folder / "templates"
    templates.mkdir(exist_ok=True)
    policy = folder / "policy.toml"
    shutil.copy(POLICIES / "stafford.toml", policy)
    return templates, policy


def offline_config(folder: Path, database_url: str, web: str = "") -> Path:
    """A council's config whose mail servers are never reached (the pages that need no
    mail): the templates folder and policy file of `prepare`, the schema made."""
    templates, policy = prepare(folder)
    (folder / "imap-password").write_text("unused\n")
    path = folder / "mailbot.toml"
    path.write_text(
        f"""\
[council]
name = "Stafford Borough Council"
policy = "{policy}"
mailbox_address = "council@example.org"
templates = "{templates}"

[imap]
host = "127.0.0.1"
port = 9
security = "none"
username = "council@example.org"
password_file = "imap-password"

[smtp]
host = "127.0.0.1"
port = 9
security = "none"

[database]
url = "{database_url}"

{web_table(web)}
{SAMPLE_OFFICERS}"""
    )
    upgrade(database_url)
    return path


def with_console(config: Path, web: str = "") -> Path:
    """A config written by tests.conftest.council_config, made the console's: its own
    templates folder and policy file, and a [web] table."""
    templates, policy = prepare(config.parent)
    text = config.read_text()
    text = text.replace('policy = "stafford"', f'policy = "{policy}"\ntemplates = "{templates}"', 1)
    text = text.replace("\n[[officers]]", f"\n{web_table(web)}\n[[officers]]", 1)
    config.write_text(text)
    return config


def load(config: Path, clock: Clock | None = None) -> App:
    return App.load(load_config(config), clock or Clock())


def add_user(app: App, email: str, role: Role, password: str | None = PASSWORD) -> None:
    with app.sessions.begin() as session:
        accounts.add_user(session, email, role, password, by="test", now=app.clock.now())


def make_case(app: App, ref: str, *, officer: str = ALEX, category: str = "enquiry") -> None:
    """A case as the pipeline leaves one (for pages that need no mail to have arrived)."""
    name = next(o.name for o in app.cfg.officers if o.email == officer)
    received = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    with app.sessions.begin() as session:
        session.add(
            Case(
                ref=ref,
                category=category,
                stage=1,
                status="open",
                priority="normal",
                policy=app.policy.name,
                resident_email="jane.doe@example.com",
                resident_name="Jane Doe",
                subject="Pothole on Mill Lane",
                officer_email=officer,
                officer_name=name,
                role="customer-services",
                received_at=received,
                acknowledge_by=date(2026, 11, 10),
                respond_by=date(2026, 11, 10),
                reasons=[],
            )
        )


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def token(page: str) -> str:
    found = CSRF.search(page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    page = client.get("/sign-in").get_data(as_text=True)
    return client.post(
        "/sign-in", data={"email": email, "password": password, "csrf_token": token(page)}
    )


def post(client: Any, path: str, data: dict[str, Any], token_from: str | None = None) -> Any:
    """A form post as the browser sends it: with the CSRF token of the page it is on."""
    page = client.get(token_from or path).get_data(as_text=True)
    return client.post(path, data={**data, "csrf_token": token(page)})
