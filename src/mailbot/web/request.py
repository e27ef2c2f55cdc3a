"""What a console page uses while it answers a request: the mailbot it serves, who is
signed in, the clock, database sessions, and the role a page requires. server.py builds
the application; the pages (views/) import this, never server.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, g, url_for
from sqlalchemy.orm import Session

from mailbot.app import App
from mailbot.web.roles import Can, Role, can


@dataclass(frozen=True)
class Person:
    """Who is signed in, with the role the database gives them now."""

    email: str
    role: Role

    def can(self, permission: Can) -> bool:
        return can(self.role, permission)


F = TypeVar("F", bound=Callable[..., Any])


def mailbot() -> App:
    return g.mailbot


def person() -> Person:
    return g.person


def now() -> datetime:
    return mailbot().clock.now()


@contextmanager
def transaction() -> Iterator[Session]:
    """A database transaction, committed when the block ends without an exception."""
    with mailbot().sessions.begin() as db:
        yield db


@contextmanager
def reading() -> Iterator[Session]:
    with mailbot().sessions() as db:
        yield db


def requires(permission: Can) -> Callable[[F], F]:
    """A page only for roles with `permission`; anyone else gets 403 with the reason."""

    def decorate(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if not person().can(permission):
                abort(403, description=f"Your role ({person().role}) may not {permission}.")
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a page of this console only, never another site."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and "\\" not in target:
            return target
    return url_for("cases.worklist")
