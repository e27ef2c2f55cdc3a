"""Errors every part of mailbot may raise for a person to act on, each one line."""

from __future__ import annotations


class ConfigError(Exception):
    """A config problem, worded as one line naming the file and key (exit 1)."""


class UsageError(Exception):
    """A bad command-line argument (exit 1)."""
