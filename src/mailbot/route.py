"""Route: choose the officer for a case — round robin among holders of the policy's role."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailbot.config import Config, OfficerConfig
from mailbot.store import bump_counter

FALLBACK_ROLE = "clerk"


def holders(cfg: Config, role: str) -> tuple[str, list[OfficerConfig]]:
    """The role actually used and its officers: the clerk role stands in for an empty role."""
    officers = cfg.officers_with(role)
    if officers:
        return role, officers
    return FALLBACK_ROLE, cfg.officers_with(FALLBACK_ROLE)


def pick(officers: list[OfficerConfig], turn: int) -> OfficerConfig | None:
    """The officer whose turn it is (turns count from 1)."""
    return officers[(turn - 1) % len(officers)] if officers else None


def choose_officer(session: Session, cfg: Config, role: str) -> OfficerConfig | None:
    """Next officer for `role`, remembering whose turn it was in the database."""
    used_role, officers = holders(cfg, role)
    if not officers:
        return None
    return pick(officers, bump_counter(session, f"route:{used_role}"))
