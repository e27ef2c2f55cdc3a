"""The console's pages, one blueprint per area; their HTML is in ../pages."""

from __future__ import annotations

from flask import Flask


def register(flask: Flask) -> None:
    from mailbot.web.views import admin, attention, cases, policy, reports, signin, wording

    for module in (signin, cases, wording, policy, reports, attention, admin):
        flask.register_blueprint(module.blueprint)
