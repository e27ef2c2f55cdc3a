"""`mailbot web` as a sysadmin runs it: the command, and its systemd unit hardened like
the daemon's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from mailbot.devservers import free_port
from tests.conftest import mailbot, stop, wait_for
from tests.console import offline_config, token
from tests.test_systemd import read_unit

ROOT = Path(__file__).resolve().parents[1]
DAEMON_UNIT = ROOT / "deploy" / "mailbot.service"
CONSOLE_UNIT = ROOT / "deploy" / "mailbot-web.service"

# What only the daemon has: its watchdog, reload, migrations and passwords of its own.
DAEMON_ONLY = {"WatchdogSec", "ExecStartPre", "ExecStart", "ExecReload", "LoadCredential"}


def test_the_console_unit_is_sandboxed_as_the_daemons_is():
    daemon = read_unit(DAEMON_UNIT)["Service"]
    console = read_unit(CONSOLE_UNIT)["Service"]
    for key, value in daemon.items():
        if key in DAEMON_ONLY or key == "UMask":
            continue
        assert console.get(key) == value, f"[Service] {key}={value}"
    assert console["ExecStart"] == ["/opt/mailbot/bin/mailbot web"]
    assert console["ReadWritePaths"] == ["-/etc/mailbot/templates -/etc/mailbot/policy"]
    assert console["LoadCredential"][0] == "web-secret:/etc/mailbot/web-secret"
    assert console["UMask"] == ["0027"]  # what it writes stays readable by the daemon


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd)",
)
def test_systemd_analyze_accepts_the_console_unit(tmp_path):
    stand_in = tmp_path / "mailbot"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = tmp_path / "mailbot-web.service"
    unit.write_text(CONSOLE_UNIT.read_text().replace("/opt/mailbot/bin/mailbot", str(stand_in)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    complaints = [line for line in result.stderr.splitlines() if "mailbot-web.service" in line]
    assert result.returncode == 0 and not complaints, result.stderr


def _get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_mailbot_web_serves_on_the_address_given_and_stops_on_sigterm(tmp_path):
    port = free_port()
    secret = tmp_path / "web-secret"
    secret.write_text("s" * 48 + "\n")
    config = offline_config(
        tmp_path, f"sqlite:///{tmp_path / 'mailbot.db'}", web='secret_file = "web-secret"'
    )
    proc = mailbot(config, "web", "--listen", f"127.0.0.1:{port}")
    try:
        url = f"http://127.0.0.1:{port}/sign-in"

        def answers() -> bool:
            try:
                return _get(url)[0] == 200
            except OSError:
                return False

        wait_for(answers)
        _, headers, page = _get(url)
        assert "Sign in to mailbot" in page
        assert "Server" not in headers  # no server name and version for the curious
        assert headers["X-Frame-Options"] == "DENY"
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert f"console listening on http://127.0.0.1:{port}" in err


def test_a_bad_listen_address_or_secret_is_one_line_and_exit_1(tmp_path):
    config = offline_config(tmp_path, f"sqlite:///{tmp_path / 'mailbot.db'}")
    proc = mailbot(config, "web", "--listen", "localhost")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.decode().strip() == (
        "mailbot: --listen: 'localhost' is not HOST:PORT (e.g. 127.0.0.1:8080)"
    )
    (tmp_path / "web-secret").write_text("too short\n")
    text = config.read_text().replace("[web]\n", '[web]\nsecret_file = "web-secret"\n', 1)
    config.write_text(text)
    proc = mailbot(config, "web", "--listen", f"127.0.0.1:{free_port()}")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "web.secret_file: web-secret is too short (at least 32 characters" in err.decode()


@pytest.mark.integration  # the demo starts its own Dovecot
def test_the_demo_serves_the_console_on_its_data_until_stopped():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailbot", "demo", "--console", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        lines = []
        while not any(line.startswith("  sign in as ") for line in lines):
            line = proc.stdout.readline().decode()
            assert line, f"the demo ended: {proc.stderr.read().decode()}"
            lines.append(line)
        assert f"  http://127.0.0.1:{port}/\n" in lines
        email, password = re.fullmatch(
            r"  sign in as (\S+) with the password (\S+)\n", lines[-1]
        ).groups()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        base = f"http://127.0.0.1:{port}"
        form = opener.open(f"{base}/sign-in").read().decode()
        data = {"email": email, "password": password, "csrf_token": token(form)}
        cases = opener.open(f"{base}/sign-in", urllib.parse.urlencode(data).encode()).read()
        assert "FOI-" in cases.decode() and "Signed in as admin@" in cases.decode()
    finally:
        code, err = stop(proc, timeout=60)
    assert code == 0, err
