"""What every command takes from its command line: the config it names and the clock
(`--now`). Shared by `mailbot`'s own commands (cli.py) and the console's (web/)."""

from __future__ import annotations

import argparse

from mailbot.app import App
from mailbot.clock import Clock, FixedClock, OffsetClock
from mailbot.config import Config, find_config, load_config


def make_clock(args: argparse.Namespace) -> Clock:
    now = getattr(args, "now", None)
    if now is None:
        return Clock()
    # A one-shot command reads a fixed instant; the daemon's clock runs on from it.
    running = args.command == "run" and not getattr(args, "once", False)
    return OffsetClock(now) if running else FixedClock(now)


def config_from(args: argparse.Namespace) -> Config:
    return load_config(find_config(args.config))


def app_from(args: argparse.Namespace) -> App:
    app = App.load(config_from(args), make_clock(args))
    app.require_schema()
    return app
