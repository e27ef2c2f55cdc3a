"""Routing: round robin among the holders of the policy's role, the clerk standing in."""

from __future__ import annotations

from mailbot.config import Config, OfficerConfig
from mailbot.route import holders, pick


def officer(name: str, *roles: str) -> OfficerConfig:
    return OfficerConfig(
        name=name, email=f"{name.lower()}@council.example.gov.uk", roles=list(roles)
    )


def config(*officers: OfficerConfig) -> Config:
    return Config.model_validate(
        {
            "council": {"name": "Test Council", "mailbox_address": "council@example.gov.uk"},
            "imap": {"host": "127.0.0.1", "security": "none"},
            "smtp": {"host": "127.0.0.1", "security": "none"},
            "officers": [o.model_dump() for o in officers],
        }
    )


def test_turns_go_round_the_role_holders_in_order():
    cfg = config(officer("Ann", "foi-officer"), officer("Bob", "foi-officer", "clerk"))
    role, people = holders(cfg, "foi-officer")
    assert role == "foi-officer"
    assert [pick(people, turn).name for turn in range(1, 6)] == ["Ann", "Bob", "Ann", "Bob", "Ann"]


def test_a_role_nobody_holds_falls_back_to_the_clerk():
    cfg = config(officer("Ann", "foi-officer"), officer("Cy", "clerk"))
    role, people = holders(cfg, "head-of-service")
    assert role == "clerk"
    assert [p.name for p in people] == ["Cy"]


def test_no_clerk_either_means_no_officer():
    cfg = config(officer("Ann", "foi-officer"))
    role, people = holders(cfg, "mayor")
    assert (role, people) == ("clerk", [])
    assert pick(people, 1) is None
