"""Wiring: the parts every command shares — config, clock, database, policy, templates."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailbot.classify import ClassificationRules, load_rules
from mailbot.clock import Clock
from mailbot.config import Config
from mailbot.oauth import OAuthTokens
from mailbot.policy import Policy, load_policy
from mailbot.store import NoTurn, make_engine, session_factory
from mailbot.templates import Templates


class NotReady(Exception):
    """The database has no schema yet (exit 2 with a hint)."""


@dataclass
class App:
    cfg: Config
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    policy: Policy
    rules: ClassificationRules
    templates: Templates
    tokens: OAuthTokens | None = None  # Microsoft 365 / Google sign-in, when configured
    # Held around the busiest write transactions: the daemon and its sending process take
    # turns through it on SQLite (store.WriteTurn); nothing to take elsewhere.
    write_turn: NoTurn = field(default_factory=NoTurn)

    @classmethod
    def load(cls, cfg: Config, clock: Clock) -> App:
        engine = make_engine(cfg.database.url)
        policy = load_policy(cfg.council.policy)
        return cls(
            cfg=cfg,
            clock=clock,
            engine=engine,
            sessions=session_factory(engine),
            policy=policy,
            rules=load_rules(policy.classification),
            templates=Templates(cfg.council.templates),
            tokens=OAuthTokens(cfg.oauth) if cfg.oauth else None,
        )

    def require_schema(self) -> None:
        if not inspect(self.engine).has_table("cases"):
            raise NotReady(
                f"database {self.engine.url.render_as_string(hide_password=True)} has no tables: "
                "run 'mailbot db upgrade' first"
            )

    def reload(self) -> None:
        """SIGHUP: read the policy and templates again (a bad policy keeps the old one)."""
        policy = load_policy(self.cfg.council.policy)
        rules = load_rules(policy.classification)
        self.policy, self.rules = policy, rules
        self.templates = Templates(self.cfg.council.templates)
