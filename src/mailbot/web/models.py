"""The console's tables, beside the daemon's in the one database (migration 0008_console)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailbot.store import Base, UTCDateTime


class ConsoleUser(Base):
    """Someone who may sign in to the console, and their role. Keyed by email, which is
    what single sign-on vouches for; a password only for local accounts."""

    __tablename__ = "console_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # roles.Role
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)  # argon2id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(254), default="")


class SignInAttempt(Base):
    """Each try at signing in with a password, kept a day: the rate limit counts them."""

    __tablename__ = "sign_in_attempts"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    email: Mapped[str] = mapped_column(String(254))
    address: Mapped[str] = mapped_column(String(64))  # the browser's IP address
    succeeded: Mapped[bool] = mapped_column(Boolean)


class TemplateVersion(Base):
    """Every saved text of a template, numbered per template from 1; the newest is the
    one in the clerk's folder."""

    __tablename__ = "template_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))  # file name: acknowledgement-foi.txt
    number: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    # templates.fingerprint(text): what an outbox row's template_version names
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    author: Mapped[str] = mapped_column(String(254))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(String(200), default="")
    __table_args__ = (UniqueConstraint("name", "number"),)


class TemplateDraft(Base):
    """What someone typed into a template's editor and has not saved (or could not:
    it did not check out). Kept so nothing typed is lost, and previewed from here."""

    __tablename__ = "template_drafts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    author: Mapped[str] = mapped_column(String(254))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("name", "author"),)


class AuditEntry(Base):
    """One change made in the console: who, when, what, and the thing before and after."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))  # audit.Action
    target: Mapped[str] = mapped_column(String(200))  # a case reference, a file name, ...
    before: Mapped[str] = mapped_column(Text, default="")
    after: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (Index("ix_audit_log_at", "at"),)
