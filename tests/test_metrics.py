"""The metrics endpoint: scraped from a running `mailbot run`, its figures are those of
`mailbot cases` and `mailbot outbox list`; the example alert rules are valid."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mailbot.categories import CATEGORIES
from mailbot.config import MetricsConfig
from mailbot.devservers import free_port
from tests.conftest import COUNCIL, council_config, mailbot, resident_mail, stop, wait_for
from tests.test_sent_copies import sent_folder

ALERTS = Path(__file__).parent.parent / "deploy" / "prometheus-alerts.yml"
NOW = "2026-11-03T10:00:00+00:00"
TODAY = date(2026, 11, 3)  # NOW in the council's timezone

FOI = (
    "Spending on consultants",
    "Under the Freedom of Information Act 2000, please provide the total amount the "
    "council spent on external consultants in each of the last three years.",
)
COMPLAINT = (
    "Complaint: bins AGAIN",
    "I wish to make a formal complaint. This is the third week running my bin has not "
    "been emptied, and nobody called back. It is not good enough.",
)
ENQUIRY = ("Pothole on Mill Lane", "When will the pothole outside 4 Mill Lane be repaired?")

# Who wrote, what about and when (some long enough ago to be overdue at NOW).
MAIL = [
    ("ann@example.com", FOI, datetime(2026, 10, 2, 10, 0, tzinfo=UTC)),
    ("bob@example.com", FOI, datetime(2026, 11, 2, 10, 0, tzinfo=UTC)),
    ("cat@example.com", COMPLAINT, datetime(2026, 10, 5, 10, 0, tzinfo=UTC)),
    ("dan@example.com", ENQUIRY, datetime(2026, 10, 6, 10, 0, tzinfo=UTC)),
    ("eve@example.com", ENQUIRY, datetime(2026, 11, 3, 9, 0, tzinfo=UTC)),
    ("refused@example.com", ENQUIRY, datetime(2026, 11, 3, 9, 5, tzinfo=UTC)),
]


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The endpoint as Prometheus reads it: each sample's name, labels and value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def by(samples: list[tuple[dict[str, str], float]], label: str) -> dict[str, float]:
    return {labels[label]: value for labels, value in samples}


def cli_json(config: Path, *args: str) -> object:
    proc = mailbot(config, *args, "--json", "--now", NOW)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


@pytest.mark.integration
def test_a_scrape_of_the_running_daemon_matches_mailbot_cases(
    tmp_path, dovecot, smtp, database_url
):
    port = free_port()
    config = council_config(
        tmp_path, dovecot, smtp, database_url, extra=f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    smtp.refuse_rcpt["refused@example.com"] = "550 5.1.1 <refused@example.com>: no such user"
    for n, (sender, (subject, body), when) in enumerate(MAIL):
        mail = resident_mail(sender=sender, subject=subject, body=body, message_id=f"<m{n}@x>")
        dovecot.append(mail, when=when)

    proc = mailbot(config, "run", "--now", NOW)
    try:
        # Every message read and answered (the refused one failed for good).
        wait_for(lambda: _failed(port) == 1, timeout=90)
        # The sending process files a copy of each message that went in the sent folder.
        wait_for(
            lambda: (
                len(sent_folder(dovecot)) == len(smtp.messages)
                and by(scrape(port)["mailbot_sent_copies"], "status")["waiting"] == 0
            ),
            timeout=60,
        )
        samples = scrape(port)
        cases = cli_json(config, "cases")
        unsent = cli_json(config, "outbox", "list")
    finally:
        code, err = stop(proc)
    assert code == 0, err

    assert isinstance(cases, list) and isinstance(unsent, dict)
    opened = Counter(case["category"] for case in cases)
    overdue = Counter(
        case["category"] for case in cases if date.fromisoformat(case["respond_by"]) < TODAY
    )
    expected_open = {category: float(opened[category]) for category in CATEGORIES}
    expected_overdue = {category: float(overdue[category]) for category in CATEGORIES}
    assert by(samples["mailbot_cases_open"], "category") == expected_open
    assert by(samples["mailbot_cases_overdue"], "category") == expected_overdue
    # Not a comparison of nothing with nothing: several categories, some overdue.
    assert sum(opened.values()) == len(MAIL)
    assert {c for c, n in opened.items() if n} >= {"foi", "enquiry"}
    assert sum(overdue.values()) >= 2

    outbox = by(samples["mailbot_outbox_messages"], "status")
    told = Counter(message["status"] for message in unsent["messages"])
    for status in ("failed", "uncertain", "bounced"):
        assert outbox[status] == told[status]
    assert outbox["failed"] == 1
    assert outbox["pending"] == outbox["sending"] == outbox["paused"] == 0
    assert unsent["waiting"] == 0

    received = by(samples["mailbot_messages_received_total"], "outcome")
    # The residents' mail; the copies of what was sent, read back from the sent folder
    # as mailbot's own, may be there too by now.
    assert sum(n for outcome, n in received.items() if outcome != "own-mail") == len(MAIL)
    sent = by(samples["mailbot_messages_sent_total"], "kind")
    assert sent["acknowledgement"] == len(MAIL) - 1

    contacts = {
        (labels["protocol"], labels["account"]): value
        for labels, value in samples["mailbot_last_contact_timestamp_seconds"]
    }
    started = datetime.fromisoformat(NOW).timestamp()
    assert started <= contacts[("imap", COUNCIL)] <= started + 120  # the daemon's clock
    assert started <= contacts[("smtp", "127.0.0.1")] <= started + 120
    assert by(samples["mailbot_mailbox_connected"], "account") == {COUNCIL: 1.0}
    [(_, last_pass)] = samples["mailbot_scheduler_last_pass_timestamp_seconds"]
    assert started <= last_pass <= started + 120
    assert samples["mailbot_database_up"] == [({}, 1.0)]
    assert by(samples["mailbot_sent_copies"], "status") == {"waiting": 0.0, "failed": 0.0}
    assert samples["process_resident_memory_bytes"][0][1] > 0


def _failed(port: int) -> float:
    try:
        return by(scrape(port)["mailbot_outbox_messages"], "status")["failed"]
    except OSError:  # not listening yet
        return -1


@pytest.mark.integration
def test_a_port_already_taken_is_one_clear_line_and_exit_2(tmp_path, dovecot, smtp):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        config = council_config(
            tmp_path, dovecot, smtp, url, extra=f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        )
        proc = mailbot(config, "run")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.decode().strip().splitlines()[-1] == (
        f"mailbot: metrics.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_metrics_listen_must_be_host_and_port_and_other_machines_are_warned_of():
    assert MetricsConfig().address is None
    assert MetricsConfig(listen="127.0.0.1:9325").warnings() == []
    assert MetricsConfig(listen="[::1]:9325").address == ("::1", 9325)
    [warning] = MetricsConfig(listen="0.0.0.0:9325").warnings()
    assert warning.startswith("metrics.listen: 0.0.0.0 can be reached from other machines")
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        MetricsConfig(listen="9325")


EXPECTED_ALERTS = {
    "MailbotDown",
    "MailbotMailboxNotReached",
    "MailbotMailboxDisconnected",
    "MailbotSendingPaused",
    "MailbotOutboxFailed",
    "MailbotOutboxBacklog",
    "MailbotCasesOverdue",
    "MailbotTokenExpiring",
    "MailbotTokenRenewalFailing",
    "MailbotSchedulerStalled",
    "MailbotSentCopiesFailing",
}
# Every metric the endpoint serves, as Prometheus names its series.
SERVED = {
    "up",
    "mailbot_last_contact_timestamp_seconds",
    "mailbot_mailbox_connected",
    "mailbot_problems_open",
    "mailbot_outbox_messages",
    "mailbot_cases_overdue",
    "mailbot_oauth_token_expiry_timestamp_seconds",
    "mailbot_oauth_renewal_failing",
    "mailbot_scheduler_last_pass_timestamp_seconds",
}


def test_the_example_alert_rules_name_the_metrics_served():
    rules = yaml.safe_load(ALERTS.read_text())
    [group] = rules["groups"]
    names = [rule["alert"] for rule in group["rules"]]
    assert set(names) == EXPECTED_ALERTS and len(names) == len(EXPECTED_ALERTS)
    for rule in group["rules"]:
        assert rule["annotations"]["summary"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        used = {word for word in _identifiers(rule["expr"]) if word.startswith(("mailbot_", "up"))}
        assert used and used <= SERVED, (rule["alert"], used - SERVED)


def _identifiers(expr: str) -> set[str]:
    import re

    return set(re.findall(r"[a-z_][a-z0-9_]*(?=\s*[{\s)<>=!]|$)", expr))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_promtool_accepts_the_example_alert_rules():
    done = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in done.stdout
