"""Wiring: the parts every command shares — config, clock, database, policy, templates."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from mailbot.classify import ClassificationRules, load_rules
from mailbot.clock import Clock
from mailbot.config import Config
from mailbot.model import Layer, Model, ModelError, layer_from_json, read_model
from mailbot.oauth import OAuthTokens
from mailbot.policy import Policy, load_policy
from mailbot.store import CouncilModel, Sessions, make_engine, session_factory
from mailbot.templates import Templates

log = logging.getLogger("mailbot.app")


class NotReady(Exception):
    """The database has no schema yet (exit 2 with a hint)."""


@dataclass
class App:
    cfg: Config
    clock: Clock
    engine: Engine
    sessions: Sessions  # every write takes the write turn (store.Sessions)
    policy: Policy
    rules: ClassificationRules
    templates: Templates
    tokens: OAuthTokens | None = None  # Microsoft 365 / Google sign-in, when configured
    # The classifier's model, read when first needed (`model()`); None: the rules alone.
    _model: Model | None = field(default=None, repr=False)
    _model_read: bool = field(default=False, repr=False)

    @classmethod
    def load(cls, cfg: Config, clock: Clock) -> App:
        engine = make_engine(cfg.database.connection_url())
        policy = load_policy(cfg.council.policy)
        return cls(
            cfg=cfg,
            clock=clock,
            engine=engine,
            sessions=session_factory(engine),
            policy=policy,
            rules=load_rules(policy.classification),
            templates=Templates(cfg.templates_dir),
            tokens=OAuthTokens(cfg.oauth) if cfg.oauth else None,
        )

    def require_schema(self) -> None:
        if not inspect(self.engine).has_table("cases"):
            raise NotReady(
                f"database {self.engine.url.render_as_string(hide_password=True)} has no tables: "
                "run 'mailbot db upgrade' first"
            )

    def reload(self) -> None:
        """SIGHUP: read the policy, templates and classifier model again (a bad policy
        keeps the old one)."""
        policy = load_policy(self.cfg.council.policy)
        rules = load_rules(policy.classification)
        self.policy, self.rules = policy, rules
        self.templates = Templates(self.cfg.templates_dir)
        self._model_read = False

    def model(self) -> Model | None:
        """The shipped model with the council's own layer, when it has retrained one.

        A model that cannot be read is logged and left out, not fatal: the rules still
        classify every message, and `mailbot check` names the file.
        """
        if not self._model_read:
            self._model_read = True
            self._model = None
            try:
                self._model = read_model().with_layer(self._council_layer())
            except ModelError as exc:
                log.error("%s; classifying by the rules alone", exc)
        return self._model

    def _council_layer(self) -> Layer | None:
        try:
            with self.sessions() as session:
                row = session.scalars(
                    select(CouncilModel).order_by(CouncilModel.id.desc()).limit(1)
                ).first()
        except SQLAlchemyError:
            return None  # no schema yet, or an older one: the shipped model alone
        if row is None:
            return None
        try:
            return layer_from_json(row.layer, f"council model #{row.id}")
        except ModelError as exc:
            log.error("%s; using the shipped model alone", exc)
            return None
