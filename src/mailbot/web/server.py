"""The console as a Flask application, and `mailbot web`, which serves it with waitress.

Every page needs a signed-in person, whose role is read again from the database on each
request (a role taken away takes effect at once); every form carries a CSRF token
(Flask-WTF); every response carries the security headers below. Pages are plain HTML
with one stylesheet and no scripts, so the console works with scripting off.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from mailbot.app import App
from mailbot.secretfile import read_secret_file
from mailbot.web import accounts
from mailbot.web.request import Person
from mailbot.web.roles import Can
from mailbot.web.settings import MIN_SECRET_CHARS

log = logging.getLogger("mailbot.web")
HERE = Path(__file__).resolve().parent

# No inline script or style anywhere, no framing, forms post only here. frame-src: the
# template preview shows a letter's HTML part in a frame from this console.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cache-Control": "no-store",  # pages hold residents' personal data
}


def secret_key(app: App) -> bytes:
    """The key that signs session cookies: from [web] secret_file, else made now."""
    web = app.cfg.web
    if web.secret_file is None:
        log.warning(
            "web.secret_file is not set: sessions end when the console restarts "
            "(make one: head -c 48 /dev/urandom | base64 > /etc/mailbot/web-secret)"
        )
        return secrets.token_bytes(32)
    folder = app.cfg.source.parent if app.cfg.source else None
    text = read_secret_file("web.secret_file", web.secret_file, folder)
    if len(text) < MIN_SECRET_CHARS:
        from mailbot.config import ConfigError

        raise ConfigError(
            f"web.secret_file: {web.secret_file} is too short (at least {MIN_SECRET_CHARS} "
            "characters; make one: head -c 48 /dev/urandom | base64 > FILE)"
        )
    return text.encode()


def create_app(app: App, *, key: bytes | None = None) -> Flask:
    """The console for `app` (its config, clock, database, policy and templates)."""
    web = app.cfg.web
    flask = Flask(
        "mailbot.web",
        template_folder=str(HERE / "pages"),
        static_folder=str(HERE / "static"),
        static_url_path="/static",
    )
    flask.config.update(
        SECRET_KEY=key or secret_key(app),
        SESSION_COOKIE_NAME="mailbot_console",
        SESSION_COOKIE_HTTPONLY=True,
        # Lax, not Strict: the single sign-on provider sends people back with a GET,
        # which must carry the cookie holding the sign-in's state.
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=web.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=web.session_hours),
        # A clerk may spend a while on a template: the form stays valid for the session.
        WTF_CSRF_TIME_LIMIT=web.session_hours * 3600,
        WTF_CSRF_SSL_STRICT=web.secure_cookies,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    flask.jinja_env.autoescape = True
    flask.extensions["mailbot"] = app
    CSRFProtect(flask)

    from mailbot.web.views import register

    register(flask)

    @flask.before_request
    def who() -> Response | None:
        g.mailbot = app
        g.person = None
        if request.endpoint in PUBLIC:
            return None
        email = session.get("email")
        if email:
            with app.sessions() as db:
                role = accounts.role_for(db, app.cfg, email)
            if role is not None:
                g.person = Person(email, role)
                return None
            session.clear()  # the account was removed: signed out at once
        return redirect(url_for("signin.form", next=request.full_path.rstrip("?")))

    @flask.after_request
    def headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", CSP)
        if request.is_secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @flask.context_processor
    def everywhere() -> dict[str, Any]:
        return {"me": g.get("person"), "Can": Can, "council": app.cfg.council.name}

    @flask.errorhandler(CSRFError)
    def refused(error: CSRFError) -> tuple[str, int]:
        log.warning("form refused (%s) from %s", error.description, request.remote_addr)
        return render_template(
            "error.html",
            title="The form was refused",
            message=(
                "The form was not sent from this console, or it has expired. Nothing was "
                "changed. Go back, reload the page and try again."
            ),
        ), 400

    @flask.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        titles = {403: "You cannot open this", 404: "Page not found"}
        return render_template(
            "error.html",
            title=titles.get(error.code or 500, error.name),
            message=error.description or "",
        ), error.code or 500

    @flask.errorhandler(Exception)
    def internal(error: Exception) -> tuple[str, int]:
        log.exception("console: internal error on %s", request.path)
        return render_template(
            "error.html",
            title="Something went wrong",
            message="The console hit a problem and has logged it. Nothing more was changed.",
        ), 500

    return flask


# Pages anyone may reach without signing in.
PUBLIC = frozenset({"static", "signin.form", "signin.submit", "signin.sso", "signin.callback"})


def serve(app: App, host: str, port: int) -> None:
    """`mailbot web`: serve until SIGTERM or Ctrl-C; READY to systemd once listening."""
    from waitress.server import create_server

    from mailbot import systemd

    flask = create_app(app)
    web = app.cfg.web
    proxy: dict[str, Any] = {}
    if web.trusted_proxy:
        proxy = {
            "trusted_proxy": web.trusted_proxy,
            "trusted_proxy_count": 1,
            "trusted_proxy_headers": "x-forwarded-for x-forwarded-proto x-forwarded-host",
        }
    server = create_server(flask, host=host, port=port, threads=8, ident="", **proxy)
    signal.signal(signal.SIGTERM, _stop)  # waitress ends its loop on SystemExit
    log.info("console listening on http://%s:%d", host, port)
    systemd.ready(f"console on http://{host}:{port}")
    server.run()
    systemd.stopping()
    log.info("console stopped")


def _stop(*_: object) -> None:
    raise SystemExit(0)


class Background:
    """The console served on a thread of this process, for the demo and the tests."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, **flask_kw: Any):
        from waitress.server import create_server

        self.server = create_server(
            create_app(app, **flask_kw), host=host, port=port, threads=4, ident=""
        )
        self.url = f"http://{host}:{self.server.effective_port}"
        self._thread: threading.Thread | None = None

    def start(self) -> Background:
        self._thread = threading.Thread(target=self.server.run, name="console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        from waitress import wasyncore

        self.server.task_dispatcher.shutdown()
        # The loop ends once it has nothing left to watch.
        wasyncore.close_all(getattr(self.server, "map", None) or self.server._map)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Background:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
