"""The console in a real browser (Debian's Chromium, driven by Playwright), against real
mail servers (Dovecot, aiosmtpd), the real daemon and a real OpenID Connect provider
(node's oidc-provider), on SQLite and PostgreSQL; axe-core checks every page.

Few and purposeful: one browser for them all, one test per journey.
"""

from __future__ import annotations

import os
import re
import select as io_select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailbot.devservers import free_port
from mailbot.store import Case, OutboxMessage
from mailbot.templates import fingerprint
from mailbot.web import wording
from mailbot.web.models import AuditEntry
from mailbot.web.roles import Role
from mailbot.web.server import Background
from tests.conftest import council_config, mailbot, resident_mail, stop, to_residents, wait_for
from tests.console import ADMIN, CLERK, PASSWORD, SAM, add_user, load, with_console

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
NODE_FOLDER = Path(__file__).resolve().parent / "browser"
AXE = NODE_FOLDER / "node_modules" / "axe-core" / "axe.min.js"
# Headless, as root, with no network but loopback: nothing a test does leaves the machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
]


def need(ready: bool, why: str) -> None:
    """What the browser tests need: in CI its absence is a failure, never a skip."""
    if not ready:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


# One browser for all of this file's tests. Not for the whole session: while Playwright's
# synchronous API is open it holds this thread's event loop, and tests elsewhere call
# asyncio.run (the outbox) on this thread.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(CHROMIUM.exists(), "chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@contextmanager
def signed_in(browser: Any, console: Background, email: str, **context: Any) -> Iterator[Any]:
    """A fresh browser profile, signed in to the console with a local password."""
    ctx = browser.new_context(**context)
    try:
        page = ctx.new_page()
        page.goto(f"{console.url}/sign-in")
        page.fill("#email", email)
        page.fill("#password", PASSWORD)
        page.click("button:text-is('Sign in')")
        assert f"Signed in as {email}" in page.inner_text("header")
        yield page
    finally:
        ctx.close()


def run_once(config: Path) -> None:
    """`mailbot run --once` as its own process: this one's event loop is Playwright's."""
    proc = mailbot(config, "run", "--once")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()


def flash(page: Any) -> str:
    return page.inner_text(".notice")


def case_refs(app) -> list[str]:
    with app.sessions() as session:
        return list(session.scalars(select(Case.ref).order_by(Case.id)))


# --- templates, through the daemon ---------------------------------------------------------


def test_a_clerk_changes_a_template_and_the_next_acknowledgement_uses_it(
    tmp_path, dovecot, smtp, database_url, browser
):
    """Sign in with a local account; an edit with a mistake is refused with its line; the
    fixed text is previewed against a real case as the resident would get it, saved,
    changed again and rolled back; the running daemon's next acknowledgement uses the
    rolled-back wording, and the console names the version that wrote it."""
    config = with_console(council_config(tmp_path, dovecot, smtp, database_url))
    app = load(config)
    add_user(app, CLERK, Role.CLERK)
    daemon = mailbot(config, "run")
    try:
        dovecot.append(resident_mail(message_id="<before-the-edit@example.com>"))
        wait_for(lambda: len(to_residents(smtp)) == 1)
        with app.sessions() as session:
            first = session.scalar(
                select(OutboxMessage).where(OutboxMessage.kind == "acknowledgement")
            )
            name = f"{first.letter['template']}.txt"
        [ref] = case_refs(app)
        builtin = wording.builtin_text(name)
        assert builtin in (wording.builtin_folder() / name).read_text()
        head, body = builtin.split("{% block body -%}\n", 1)

        def version(words: str) -> str:
            return f"{head}{{% block body -%}}\n{words}\n\n{body}"

        wording_a = version("We read every message the day it arrives: you will hear from us.")
        wording_b = version("A second thought that will be rolled back.")
        broken = version("Your reference is {{ case.reff }}.")
        broken_line = broken.splitlines().index("Your reference is {{ case.reff }}.") + 1

        with Background(app) as console, signed_in(browser, console, CLERK) as page:
            page.click("nav >> text=Templates")
            page.click(f"text={name}")
            page.fill("#text", broken)
            page.click("button[value=save]")
            problems = page.inner_text(".error-summary")
            assert f"Line {broken_line}: 'case' has no field 'reff'" in problems
            assert "Your reference is {{ case.reff }}." in problems  # the line itself
            assert page.input_value("#text") == broken  # nothing typed is lost
            assert not (tmp_path / "templates" / name).exists()  # the working text stays

            page.fill("#text", wording_a)
            page.select_option("#case", ref)
            page.click("button[value=preview]")
            shown = page.inner_text(".preview")
            assert f"Re: Pothole on Mill Lane [Ref: {ref}]" in shown
            assert "Jane Doe <jane.doe@example.com>" in shown
            assert "We read every message the day it arrives" in shown
            html = page.frame_locator("iframe.letter").locator("body")
            assert "We read every message the day it arrives" in html.inner_text()
            assert ref in html.inner_text()

            page.click("button[value=save]")
            assert f"Saved {name} as version 1" in flash(page)
            page.fill("#text", wording_b)
            page.click("button[value=save]")
            assert f"Saved {name} as version 2" in flash(page)
            page.click("button:text-is('Roll back to version 1')")
            assert f"{name} is back to version 1 (saved as version 3)" in flash(page)
            assert (tmp_path / "templates" / name).read_text() == wording_a

            dovecot.append(
                resident_mail(
                    sender="john.smith@example.com", message_id="<after-the-edit@example.com>"
                )
            )
            wait_for(lambda: len(to_residents(smtp)) == 2)
            wait_for(lambda: len(case_refs(app)) == 2)
            second_ref = case_refs(app)[1]
            page.goto(f"{console.url}/cases/{second_ref}")
            page.click("details.message summary")
            assert f"{name} version 3" in page.inner_text("details.message")
    finally:
        code, err = stop(daemon)
    assert code == 0, err
    before, after = (m.text() for m in to_residents(smtp))
    assert "We read every message the day it arrives" not in before
    assert "We read every message the day it arrives" in after
    assert "A second thought" not in after
    with app.sessions() as session:
        versions = session.scalars(
            select(OutboxMessage.template_version)
            .where(OutboxMessage.kind == "acknowledgement")
            .order_by(OutboxMessage.id)
        ).all()
    stem = name.removesuffix(".txt")
    assert versions == [f"{stem}@{fingerprint(builtin)}", f"{stem}@{fingerprint(wording_a)}"]


# --- cases, the audit log, reports, roles, CSRF --------------------------------------------


def test_acting_on_a_case_reading_a_report_and_what_others_may_not_do(
    tmp_path, dovecot, smtp, database_url, browser
):
    config = with_console(council_config(tmp_path, dovecot, smtp, database_url))
    app = load(config)
    add_user(app, ADMIN, Role.ADMIN)
    add_user(app, SAM, Role.OFFICER)
    dovecot.append(resident_mail(message_id="<pothole@example.com>"))
    run_once(config)
    [ref] = case_refs(app)
    with app.sessions() as session:
        officer = session.scalar(select(Case.officer_name).where(Case.ref == ref))
    assert officer == "Alex Morgan"
    today = date.today().isoformat()

    with Background(app) as console:
        with signed_in(browser, console, ADMIN, accept_downloads=True) as page:
            # The worklist, then the case, then an action on it.
            page.fill("#q", ref.lower())
            page.click("button:text-is('Show cases')")
            page.click(f"text={ref}")
            page.select_option("#officer", label="Jordan Reid")
            page.click("button:text-is('Reassign')")
            assert "#reassign: now with Jordan Reid." in flash(page)
            history = page.inner_text("#history + table")
            assert f"from Alex Morgan to Jordan Reid by {ADMIN}" in history

            page.click("nav >> text=Audit log")
            row = page.locator("table.audit tbody tr", has_text=ref)
            assert "case action" in row.inner_text() and ADMIN in row.inner_text()
            row.locator("summary").click()
            assert '"officer": "jordan.reid@council.example.gov.uk"' in row.inner_text()

            # A report for a period that takes in today.
            page.click("nav >> text=Reports")
            page.fill("#from", today)
            page.fill("#to", today)
            page.click("button:text-is('Show the report')")
            figures = page.locator("table.figures tbody tr", has_text="nquir")
            assert figures.locator("td").first.inner_text() == "1"  # received
            with page.expect_download() as download:
                page.click("text=figures (CSV)")
            csv = Path(download.value.path()).read_text()
            assert csv.splitlines()[0].startswith("category,stage,received")
            assert any(line.startswith("enquiry,1,1,") for line in csv.splitlines())

            # A form sent without the console's CSRF token (from another site, say).
            refused = page.request.post(f"{console.url}/cases/{ref}/act", form={"action": "close"})
            assert refused.status == 400
            assert "The form was refused" in refused.text()

        with signed_in(browser, console, SAM) as page:
            page.goto(f"{console.url}/cases/{ref}")
            assert page.inner_text("h1") == "You cannot open this"
            assert f"{ref} is not one of your cases." in page.inner_text("main")
            page.goto(f"{console.url}/cases")
            assert ref not in page.inner_text("main")

    with app.sessions() as session:
        case = session.scalar(select(Case).where(Case.ref == ref))
        assert case.status == "open"  # the forged close did nothing
        assert case.officer_email == "jordan.reid@council.example.gov.uk"
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.target == ref)).all()
    assert actions == ["case action"]


# --- single sign-on ------------------------------------------------------------------------


@contextmanager
def oidc_provider(port: int, redirect_uri: str) -> Iterator[str]:
    """node's oidc-provider on loopback, with one client: the console."""
    need(shutil.which("node") is not None, "node is not installed")
    need(
        (NODE_FOLDER / "node_modules" / "oidc-provider").is_dir(),
        "oidc-provider is not installed: run scripts/setup (npm ci in tests/browser)",
    )
    proc = subprocess.Popen(
        ["node", "oidc-provider.mjs", str(port), "console", "console-secret", redirect_uri],
        cwd=NODE_FOLDER,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            ready, _, _ = io_select.select([proc.stdout], [], [], 0.5)
            if ready and "listening" in proc.stdout.readline():
                break
            if proc.poll() is not None:
                raise AssertionError(f"oidc-provider stopped: {proc.stderr.read()}")
        else:
            raise AssertionError("oidc-provider did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_single_sign_on_with_a_real_openid_connect_provider(tmp_path, database_url, browser):
    from tests.console import offline_config

    console_port, provider_port = free_port(), free_port()
    secret = tmp_path / "oidc-secret"
    secret.write_text("console-secret\n")
    config = offline_config(
        tmp_path,
        database_url,
        web=(
            "[web.oidc]\n"
            f'issuer = "http://127.0.0.1:{provider_port}"\n'
            'client_id = "console"\n'
            f'client_secret_file = "{secret}"\n'
            'allowed_domains = ["council.example.gov.uk"]\n'
            'label = "the council\'s sign-in service"\n'
        ),
    )
    app = load(config)
    add_user(app, CLERK, Role.CLERK, password=None)  # single sign-on only
    callback = f"http://127.0.0.1:{console_port}/sign-in/sso/callback"
    with (
        oidc_provider(provider_port, callback),
        Background(app, port=console_port) as console,
    ):
        for email, allowed in ((CLERK, True), ("someone@elsewhere.example", False)):
            ctx = browser.new_context()
            try:
                page = ctx.new_page()
                page.goto(f"{console.url}/cases")
                page.click("text=Sign in with the council's sign-in service")
                page.fill("input[name=login]", email)  # the provider's own sign-in page
                page.fill("input[name=password]", "any")
                page.click("button:text-is('Sign-in')")
                page.click("button:text-is('Continue')")  # consent, on the provider
                page.wait_for_url(re.compile(f"^{re.escape(console.url)}/"))
                if allowed:
                    assert page.url == f"{console.url}/cases"
                    assert f"Signed in as {CLERK} (clerk)" in page.inner_text("header")
                else:
                    assert "may not sign in here: use your council account" in page.inner_text(
                        "main"
                    )
                    page.goto(f"{console.url}/cases")
                    assert page.url.startswith(f"{console.url}/sign-in")
            finally:
                ctx.close()
    with app.sessions() as session:
        entries = session.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.target)
        ).all()
    assert entries == [(CLERK, "signed in", "single sign-on")]


# --- accessibility --------------------------------------------------------------------------

RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def serious_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }""",
        RULES,
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_every_page_has_no_serious_accessibility_problem(
    tmp_path, dovecot, smtp, database_url, browser
):
    need(AXE.exists(), "axe-core is not installed: run scripts/setup (npm ci in tests/browser)")
    config = with_console(council_config(tmp_path, dovecot, smtp, database_url))
    app = load(config)
    add_user(app, ADMIN, Role.ADMIN)
    dovecot.append(resident_mail(message_id="<a11y@example.com>"))
    dovecot.append(
        resident_mail(
            sender="win@example.net",
            message_id="<spam@example.net>",
            headers={"X-Spam-Flag": "YES"},
        )
    )
    run_once(config)
    [ref] = case_refs(app)
    pages = [
        "/cases",
        "/cases?overdue=1&triage=1",
        f"/cases/{ref}",
        "/templates",
        "/templates/acknowledgement-enquiry.txt",
        "/templates/_layout.html",
        "/policy",
        "/policy/hours",
        "/policy/edit",
        "/reports?from=2026-01-01&to=2026-12-31",
        "/attention",
        "/health",
        "/users",
        "/audit",
        "/no-such-page",
    ]
    problems: dict[str, list[dict[str, Any]]] = {}
    with Background(app) as console:
        ctx = browser.new_context(bypass_csp=True)  # to let the test add axe to each page
        try:
            page = ctx.new_page()
            page.goto(f"{console.url}/sign-in")
            problems["/sign-in"] = serious_violations(page)
            page.fill("#email", ADMIN)
            page.fill("#password", "wrong password, twelve+")
            page.click("button:text-is('Sign in')")
            problems["/sign-in (refused)"] = serious_violations(page)
            page.fill("#password", PASSWORD)
            page.click("button:text-is('Sign in')")
            for path in pages:
                page.goto(f"{console.url}{path}")
                problems[path] = serious_violations(page)
            # Pages as they are after a mistake: the problems shown with the form.
            page.goto(f"{console.url}/templates/acknowledgement-enquiry.txt")
            page.fill("#text", "{{ case.reff }}")
            page.click("button[value=preview]")
            problems["template refused"] = serious_violations(page)
            page.fill("#text", wording.builtin_text("acknowledgement-enquiry.txt"))
            page.select_option("#case", ref)
            page.click("button[value=preview]")
            problems["template preview"] = serious_violations(page)
            page.goto(f"{console.url}/policy/hours")
            page.fill("#opens", "nine")
            page.click("button:text-is('Check and save')")
            problems["hours refused"] = serious_violations(page)
            page.goto(f"{console.url}/cases/{ref}")
            page.fill("#days", "five")
            page.click("button:text-is('Extend')")
            problems["case action refused"] = serious_violations(page)
        finally:
            ctx.close()
    found = {where: v for where, v in problems.items() if v}
    assert found == {}, found
    assert len(problems) == len(pages) + 6
