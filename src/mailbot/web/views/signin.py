"""Signing in and out: a local account's password, or single sign-on (OpenID Connect)."""

from __future__ import annotations

import logging
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, current_app, flash, redirect, render_template, request, session
from flask import url_for as url
from werkzeug.wrappers import Response

from mailbot.parse import valid_address
from mailbot.web import accounts
from mailbot.web.audit import Action, record
from mailbot.web.request import mailbot, now, reading, safe_next, transaction

log = logging.getLogger("mailbot.web")
blueprint = Blueprint("signin", __name__)


def _oauth() -> Any | None:
    """The OpenID Connect client for [web.oidc], made once per application."""
    oidc = mailbot().cfg.web.oidc
    if oidc is None:
        return None
    if "mailbot_oidc" not in current_app.extensions:
        cfg = mailbot().cfg
        folder = cfg.source.parent if cfg.source else None
        from mailbot.secretfile import read_secret_file

        client = OAuth(current_app)
        client.register(
            "council",
            client_id=oidc.client_id,
            client_secret=read_secret_file(
                "web.oidc.client_secret_file", oidc.client_secret_file, folder
            ),
            server_metadata_url=f"{oidc.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
        )
        current_app.extensions["mailbot_oidc"] = client.council
    return current_app.extensions["mailbot_oidc"]


def _page(error: str = "", email: str = "", status: int = 200) -> tuple[str, int]:
    web = mailbot().cfg.web
    return render_template(
        "signin.html",
        error=error,
        email=email,
        passwords=web.passwords,
        sso=web.oidc.label if web.oidc else None,
        next=request.values.get("next", ""),
    ), status


@blueprint.get("/sign-in")
def form() -> Any:
    if session.get("email"):
        return redirect(safe_next(request.args.get("next")))
    return _page()


@blueprint.post("/sign-in")
def submit() -> Any:
    if not mailbot().cfg.web.passwords:
        return _page("Sign in with your council account.", status=400)
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    if not email or not password:
        return _page("Enter your email address and password.", email, 400)
    with transaction() as db:
        result = accounts.sign_in_with_password(
            db, email, password, address=request.remote_addr or "-", now=now()
        )
        if result.email:
            record(db, actor=result.email, action=Action.SIGNED_IN, target="password", now=now())
    if result.email is None:
        log.warning("console sign-in refused for %r from %s", email[:80], request.remote_addr)
        status = 429 if result.refusal.startswith("Too many") else 400
        return _page(result.refusal, email, status)
    return _start_session(result.email)


def _start_session(email: str) -> Response:
    target = safe_next(request.values.get("next") or session.get("next"))
    session.clear()  # nothing from before signing in carries over
    session.permanent = True
    session["email"] = email
    log.info("console: %s signed in", email)
    return redirect(target)


@blueprint.get("/sign-in/sso")
def sso() -> Any:
    client = _oauth()
    if client is None:
        return _page("Single sign-on is not set up here.", status=404)
    web = mailbot().cfg.web
    base = web.public_url or request.host_url.rstrip("/")
    session["next"] = request.args.get("next", "")
    try:
        return client.authorize_redirect(f"{base}{url('signin.callback')}")
    except (requests.RequestException, OAuthError, ValueError) as exc:
        log.error("single sign-on: cannot reach %s: %s", web.oidc.issuer, exc)
        return _page(
            "The sign-in service cannot be reached just now. Try again shortly.", status=502
        )


@blueprint.get("/sign-in/sso/callback")
def callback() -> Any:
    client = _oauth()
    oidc = mailbot().cfg.web.oidc
    if client is None or oidc is None:
        return _page("Single sign-on is not set up here.", status=404)
    try:
        token = client.authorize_access_token(
            claims_options={"iss": {"essential": True, "values": [oidc.issuer]}}
        )
        claims = dict(token.get("userinfo") or {})
        if not claims.get("email"):
            # Some providers keep the email for the userinfo endpoint.
            more = client.userinfo(token=token)
            if more.get("sub") == claims.get("sub"):
                claims.update(more)
    except OAuthError as exc:
        log.warning("single sign-on refused: %s", exc)
        return _page("Single sign-on did not complete. Try again.", status=400)
    except requests.RequestException as exc:
        log.error("single sign-on: cannot reach %s: %s", oidc.issuer, exc)
        return _page(
            "The sign-in service cannot be reached just now. Try again shortly.", status=502
        )
    email = valid_address(str(claims.get("email") or ""))
    if email is None or claims.get("email_verified") is False:
        return _page("Your council account did not give a verified email address.", status=403)
    if email.rsplit("@", 1)[1] not in oidc.allowed_domains:
        log.warning("single sign-on: %s is not in an allowed domain", email)
        return _page(f"{email} may not sign in here: use your council account.", status=403)
    with reading() as db:
        role = accounts.role_for(db, mailbot().cfg, email)
    if role is None:
        return _page(
            f"{email} has no access to the console yet. Ask your administrator to add you.",
            status=403,
        )
    with transaction() as db:
        record(db, actor=email, action=Action.SIGNED_IN, target="single sign-on", now=now())
    return _start_session(email)


@blueprint.post("/sign-out")
def sign_out() -> Response:
    session.clear()
    flash("You have signed out.", "status")
    return redirect(url("signin.form"))
