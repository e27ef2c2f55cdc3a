"""A secret read from a file, found the same way for every key that names one
(`[imap] password_file`, `[database] password_file`, `[web] secret_file`, …)."""

from __future__ import annotations

import os
from pathlib import Path

from mailbot.errors import ConfigError


def read_secret_file(key: str, path: Path, folder: Path | None) -> str:
    """The file's text, stripped: an absolute path as given; a relative one in systemd's
    $CREDENTIALS_DIRECTORY (LoadCredential=) if set, else beside the config (`folder`).
    Problems name the key; an empty file is one, said now rather than as a failed sign-in
    later."""
    if not path.is_absolute():
        if os.environ.get("CREDENTIALS_DIRECTORY"):
            path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / path
        elif folder is not None:  # beside the config, wherever mailbot runs from
            path = folder / path
    try:
        value = path.read_bytes().decode("utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{key}: {path} is not UTF-8 text") from exc
    if not value:
        raise ConfigError(f"{key}: {path} is empty")
    return value
