"""Console accounts: who may sign in, with which role; passwords (argon2id) and the
sign-in rate limit. No Flask here: `mailbot users add` and the console share it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailbot.config import Config
from mailbot.parse import valid_address
from mailbot.web.models import ConsoleUser, SignInAttempt
from mailbot.web.roles import Role

# Failed sign-ins allowed in WINDOW, per account and per browser address; then a wait.
FAILURES_PER_ACCOUNT = 5
FAILURES_PER_ADDRESS = 20
WINDOW = timedelta(minutes=15)
KEEP_ATTEMPTS = timedelta(days=1)
# NCSC: length, not composition rules, makes a password strong.
MIN_PASSWORD = 12

_hasher = PasswordHasher()  # argon2id with the library's current recommended costs
# Checked against when there is no such user, so a wrong address takes as long as a
# wrong password and does not tell anyone which accounts exist.
_NOBODY = _hasher.hash("no such user: a password nobody has")


class AccountError(Exception):
    """A request about an account that cannot be carried out; one line for the person."""


def normal_email(text: str) -> str:
    email = valid_address(text.strip())
    if email is None:
        raise AccountError(f"{text.strip()[:80]!r} is not an email address")
    return email


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise AccountError(
            f"{text.strip()[:40]!r} is not a role; one of: {', '.join(r.value for r in Role)}"
        ) from None


def check_new_password(password: str, email: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if password.strip().lower() == email.lower():
        raise AccountError("the password must not be the email address")


def add_user(
    session: Session, email: str, role: Role, password: str | None, *, by: str, now: datetime
) -> ConsoleUser:
    """A new console user; without a password they sign in by single sign-on only."""
    email = normal_email(email)
    if session.scalar(select(ConsoleUser).where(ConsoleUser.email == email)) is not None:
        raise AccountError(f"{email} already has a console account")
    if password is not None:
        check_new_password(password, email)
    user = ConsoleUser(
        email=email,
        role=role.value,
        password_hash=_hasher.hash(password) if password is not None else None,
        created_at=now,
        created_by=by,
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, email: str) -> ConsoleUser | None:
    address = valid_address(email.strip())
    if address is None:
        return None
    return session.scalar(select(ConsoleUser).where(ConsoleUser.email == address))


def role_for(session: Session, cfg: Config, email: str) -> Role | None:
    """The role someone signs in with: their console account's, else officer for the
    configured officers (who read their own cases), else none (not let in)."""
    user = find_user(session, email)
    if user is not None:
        return Role(user.role)
    if cfg.officer(email) is not None:
        return Role.OFFICER
    return None


@dataclass(frozen=True)
class SignIn:
    """The outcome of a password sign-in: the email signed in, or why not."""

    email: str | None
    refusal: str = ""


def too_many(failures_for_account: int, failures_from_address: int) -> bool:
    """The rate limit: a decision on counts, tested without a clock or a database."""
    return (
        failures_for_account >= FAILURES_PER_ACCOUNT
        or failures_from_address >= FAILURES_PER_ADDRESS
    )


def sign_in_with_password(
    session: Session, email: str, password: str, *, address: str, now: datetime
) -> SignIn:
    """Check a password, counting the attempt; refuse without checking once over the limit.

    The refusal never says whether the account exists.
    """
    typed = (email or "").strip().lower()[:254]
    session.execute(delete(SignInAttempt).where(SignInAttempt.at < now - KEEP_ATTEMPTS))
    since = now - WINDOW
    failed = select(func.count()).where(SignInAttempt.at >= since, ~SignInAttempt.succeeded)
    by_account = session.scalar(failed.where(SignInAttempt.email == typed)) or 0
    by_address = session.scalar(failed.where(SignInAttempt.address == address)) or 0
    if too_many(by_account, by_address):
        minutes = int(WINDOW.total_seconds() // 60)
        return SignIn(
            None,
            f"Too many failed sign-ins. Wait {minutes} minutes and try again, or ask your "
            "administrator to set a new password.",
        )
    user = find_user(session, typed)
    ok = False
    try:
        if user is not None and user.password_hash:
            ok = _hasher.verify(user.password_hash, password)
        else:
            _hasher.verify(_NOBODY, password + "x")  # the same work as a real check
    except (VerificationError, InvalidHashError):
        ok = False
    session.add(SignInAttempt(at=now, email=typed, address=address[:64], succeeded=ok))
    if not ok or user is None:
        return SignIn(None, "The email address or password is not right.")
    if _hasher.check_needs_rehash(user.password_hash or ""):
        user.password_hash = _hasher.hash(password)  # the library's costs have gone up
    return SignIn(user.email)


def set_password(session: Session, email: str, password: str) -> None:
    user = find_user(session, email)
    if user is None:
        raise AccountError(f"no console account {email}")
    check_new_password(password, user.email)
    user.password_hash = _hasher.hash(password)


def users(session: Session) -> list[ConsoleUser]:
    return list(session.scalars(select(ConsoleUser).order_by(ConsoleUser.email)))
