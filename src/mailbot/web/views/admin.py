"""The admin's pages: console users and the audit log (with its CSV export)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from mailbot.web import accounts, audit
from mailbot.web.audit import Action, record
from mailbot.web.request import now, person, reading, requires, transaction
from mailbot.web.roles import Can, Role, describe

blueprint = Blueprint("admin", __name__)
PAGE = 100


def _users_page(error: str = "", form: dict[str, str] | None = None, status: int = 200) -> Any:
    with reading() as db:
        people = accounts.users(db)
    return render_template(
        "users.html",
        people=people,
        roles=[(role.value, describe(role)) for role in Role],
        error=error,
        form=form or {},
    ), status


@blueprint.get("/users")
@requires(Can.MANAGE_USERS)
def users() -> Any:
    return _users_page()


@blueprint.post("/users")
@requires(Can.MANAGE_USERS)
def add_user() -> Any:
    form = {k: request.form.get(k, "") for k in ("email", "role")}
    password = request.form.get("password", "") or None
    me, at = person(), now()
    try:
        role = accounts.parse_role(form["role"])
        with transaction() as db:
            user = accounts.add_user(db, form["email"], role, password, by=me.email, now=at)
            record(
                db,
                actor=me.email,
                action=Action.USER_ADDED,
                target=user.email,
                now=at,
                after=f"role {role.value}; " + ("password" if password else "single sign-on"),
            )
    except accounts.AccountError as exc:
        return _users_page(str(exc), form, 400)
    flash(f"{user.email} may now sign in as {role.value}.", "status")
    return redirect(url_for("admin.users"))


@blueprint.post("/users/<int:user_id>")
@requires(Can.MANAGE_USERS)
def change_user(user_id: int) -> Any:
    from mailbot.web.models import ConsoleUser

    me, at = person(), now()
    action = request.form.get("action", "")
    try:
        with transaction() as db:
            user = db.get(ConsoleUser, user_id)
            if user is None:
                raise accounts.AccountError("there is no such user")
            if user.email == me.email and action in ("remove", "role"):
                raise accounts.AccountError("you cannot change or remove your own account")
            if action == "remove":
                record(
                    db,
                    actor=me.email,
                    action=Action.USER_REMOVED,
                    target=user.email,
                    now=at,
                    before=user.role,
                )
                db.delete(user)
                said = f"{user.email} may no longer sign in."
            elif action == "role":
                role = accounts.parse_role(request.form.get("role", ""))
                record(
                    db,
                    actor=me.email,
                    action=Action.USER_CHANGED,
                    target=user.email,
                    now=at,
                    before=user.role,
                    after=role.value,
                )
                user.role = role.value
                said = f"{user.email} is now {role.value}."
            elif action == "password":
                accounts.set_password(db, user.email, request.form.get("password", ""))
                record(db, actor=me.email, action=Action.PASSWORD_SET, target=user.email, now=at)
                said = f"{user.email} has a new password."
            else:
                raise accounts.AccountError("choose what to do")
    except accounts.AccountError as exc:
        return _users_page(str(exc)[:1].upper() + str(exc)[1:] + ".", status=400)
    flash(said, "status")
    return redirect(url_for("admin.users"))


@blueprint.get("/audit")
@requires(Can.READ_AUDIT)
def audit_log() -> Any:
    page = (
        max(1, int(request.args.get("page", "1"))) if request.args.get("page", "1").isdigit() else 1
    )
    with reading() as db:
        rows = audit.entries(db, limit=PAGE + 1, offset=(page - 1) * PAGE)
    return render_template("audit.html", rows=rows[:PAGE], page=page, more=len(rows) > PAGE)


@blueprint.get("/audit.csv")
@requires(Can.READ_AUDIT)
def audit_csv() -> Response:
    with reading() as db:
        text = audit.to_csv(audit.entries(db))
    response = Response(text, mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="mailbot-audit-log.csv"'
    return response
