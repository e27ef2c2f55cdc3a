"""Roles: what each kind of console user may do (issue 20, point 1)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OFFICER = "officer"  # reads their own cases; acts on them by email, as ever
    CLERK = "clerk"  # the day-to-day work: wording, hours, cases, held mail
    MANAGER = "manager"  # every case and the reports
    ADMIN = "admin"  # everything, with users, the whole policy and the audit log


class Can(StrEnum):
    SEE_ALL_CASES = "see every case"
    ACT_ON_CASES = "act on cases"
    EDIT_TEMPLATES = "edit templates"
    EDIT_HOURS = "edit office hours and closure days"
    EDIT_POLICY = "edit the whole policy"
    READ_REPORTS = "read reports"
    HANDLE_HELD = "release held mail and deal with failed sends"
    SEE_HEALTH = "see mailbox health"
    MANAGE_USERS = "manage console users"
    READ_AUDIT = "read the audit log"


PERMISSIONS: dict[Role, frozenset[Can]] = {
    Role.OFFICER: frozenset(),
    Role.CLERK: frozenset(
        {
            Can.SEE_ALL_CASES,
            Can.ACT_ON_CASES,
            Can.EDIT_TEMPLATES,
            Can.EDIT_HOURS,
            Can.READ_REPORTS,
            Can.HANDLE_HELD,
            Can.SEE_HEALTH,
        }
    ),
    Role.MANAGER: frozenset({Can.SEE_ALL_CASES, Can.READ_REPORTS, Can.SEE_HEALTH}),
    Role.ADMIN: frozenset(Can),
}


def can(role: Role, permission: Can) -> bool:
    return permission in PERMISSIONS[role]


def may_read_case(role: Role, email: str, case_officer: str | None) -> bool:
    """Everyone who sees every case, and an officer the case is with."""
    if can(role, Can.SEE_ALL_CASES):
        return True
    return case_officer is not None and case_officer.lower() == email.lower()


def describe(role: Role) -> str:
    """'clerk: see every case, act on cases, ...' for `mailbot users` and the users page."""
    allowed = [p.value for p in Can if p in PERMISSIONS[role]]
    return f"{role.value}: " + (", ".join(allowed) if allowed else "read their own cases")
