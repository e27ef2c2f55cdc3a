"""Where the built-in templates and policies live, in a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def builtin_dir(kind: str) -> Path:
    """The shipped `templates` or `policies` folder.

    In a source checkout (and an editable install) they sit at the top of the project,
    where a clerk can find them; a built wheel carries copies under `mailbot/_data`.
    """
    checkout = _PACKAGE.parent.parent / kind
    if checkout.is_dir():
        return checkout
    return _PACKAGE / "_data" / kind
