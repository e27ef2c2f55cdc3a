"""`mailbot web` and `mailbot users ...`: the console's commands (added to cli.py's parser).

Flask and the password hasher are imported only when one of these runs, so every other
command starts as fast as before.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

ROLES = ("clerk", "manager", "officer", "admin")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    web = sub.add_parser("web", parents=[common], help="the clerk's console (SPEC §8)")
    web.add_argument(
        "--listen", metavar="HOST:PORT", help="default: [web] listen, else 127.0.0.1:8080"
    )
    web.set_defaults(handler=cmd_web)

    users = sub.add_parser("users", help="the console's user accounts")
    users_sub = users.add_subparsers(
        dest="users_command", required=True, metavar="ACTION", parser_class=sub._parser_class
    )
    # allow_abbrev=False: "--password SECRET" must not be taken for --password-file (and
    # the secret then shown in an error as a file that cannot be read).
    add = users_sub.add_parser(
        "add",
        parents=[common],
        allow_abbrev=False,
        help="a console account (local password or single sign-on)",
    )
    add.add_argument("email")
    add.add_argument("--role", required=True, choices=ROLES)
    how = add.add_mutually_exclusive_group()
    how.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="read the password from FILE (default: ask for it)",
    )
    how.add_argument(
        "--no-password", action="store_true", help="signs in by single sign-on only ([web.oidc])"
    )
    # Refused with a reason, rather than argparse's "unrecognized arguments: ..." that
    # would print the password back.
    add.add_argument("--password", help=argparse.SUPPRESS)
    add.set_defaults(handler=cmd_users_add)
    listing = users_sub.add_parser("list", parents=[common], help="every console account")
    listing.set_defaults(handler=cmd_users_list)
    password = users_sub.add_parser(
        "password", parents=[common], allow_abbrev=False, help="set a local account's password"
    )
    password.add_argument("email")
    password.add_argument("--password-file", type=Path, metavar="FILE")
    password.add_argument("--password", help=argparse.SUPPRESS)
    password.set_defaults(handler=cmd_users_password)
    remove = users_sub.add_parser("remove", parents=[common], help="remove a console account")
    remove.add_argument("email")
    remove.set_defaults(handler=cmd_users_remove)


def _app(args: argparse.Namespace) -> Any:
    from mailbot.app import App
    from mailbot.clock import Clock, OffsetClock
    from mailbot.invocation import config_from

    # A clock that runs on from --now, as the daemon's does: the console is long-lived.
    clock = OffsetClock(args.now) if getattr(args, "now", None) else Clock()
    app = App.load(config_from(args), clock)
    app.require_schema()
    return app


def cmd_web(args: argparse.Namespace) -> int:
    from mailbot.errors import UsageError
    from mailbot.web.server import serve
    from mailbot.web.settings import parse_listen

    app = _app(args)
    try:
        host, port = parse_listen(args.listen) if args.listen else app.cfg.web.address
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from exc
    print(f"mailbot console: http://{host}:{port}/", file=sys.stderr)
    serve(app, host, port)
    return 0


def _password(args: argparse.Namespace, email: str) -> str:
    """From --password-file, else asked twice at the terminal; never an argument."""
    from mailbot.errors import UsageError

    if getattr(args, "password", None) is not None:
        raise UsageError(
            "passwords are never taken as arguments (other users can see them, and the "
            "shell's history keeps them): use --password-file FILE, or type it when asked"
        )

    if args.password_file is not None:
        try:
            text = args.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--password-file: cannot read {args.password_file}: {exc}") from exc
        return text.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password on: give --password-file FILE")
    first = getpass.getpass(f"Password for {email}: ")
    if getpass.getpass("The same again: ") != first:
        raise UsageError("the two passwords differ; nothing changed")
    return first


def cmd_users_add(args: argparse.Namespace) -> int:
    from mailbot.errors import UsageError
    from mailbot.web import accounts
    from mailbot.web.audit import Action, record
    from mailbot.web.roles import Role, describe

    app = _app(args)
    role = Role(args.role)
    try:
        email = accounts.normal_email(args.email)
        password = None if args.no_password else _password(args, email)
        with app.sessions.begin() as session:
            accounts.add_user(
                session, email, role, password, by="mailbot users add", now=app.clock.now()
            )
            record(
                session,
                actor="mailbot users add",
                action=Action.USER_ADDED,
                target=email,
                now=app.clock.now(),
                after=f"role {role.value}; "
                + ("single sign-on" if password is None else "password"),
            )
    except accounts.AccountError as exc:
        raise UsageError(str(exc)) from exc
    print(f"added {email}: {describe(role)}")
    if password is None and app.cfg.web.oidc is None:
        print("note: no [web.oidc] is configured, so this account cannot sign in yet")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from mailbot.web import accounts

    app = _app(args)
    with app.sessions() as session:
        rows = accounts.users(session)
        for user in rows:
            how = "password" if user.password_hash else "single sign-on"
            print(f"{user.email}  {user.role}  {how}")
    if not rows:
        print("no console accounts (add one with: mailbot users add EMAIL --role admin)")
    return 0


def cmd_users_password(args: argparse.Namespace) -> int:
    from mailbot.errors import UsageError
    from mailbot.web import accounts
    from mailbot.web.audit import Action, record

    app = _app(args)
    try:
        email = accounts.normal_email(args.email)
        password = _password(args, email)
        with app.sessions.begin() as session:
            accounts.set_password(session, email, password)
            record(
                session,
                actor="mailbot users password",
                action=Action.PASSWORD_SET,
                target=email,
                now=app.clock.now(),
            )
    except accounts.AccountError as exc:
        raise UsageError(str(exc)) from exc
    print(f"{email} has a new password")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    from mailbot.errors import UsageError
    from mailbot.web import accounts
    from mailbot.web.audit import Action, record

    app = _app(args)
    with app.sessions.begin() as session:
        user = accounts.find_user(session, args.email)
        if user is None:
            raise UsageError(f"no console account {args.email}")
        record(
            session,
            actor="mailbot users remove",
            action=Action.USER_REMOVED,
            target=user.email,
            now=app.clock.now(),
            before=user.role,
        )
        session.delete(user)
    print(f"removed {args.email}")
    return 0
