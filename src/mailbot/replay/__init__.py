"""Replay: rehearsing a policy on past mail (`mailbot replay`).

sources.py  reading an export: mbox, Maildir, .eml, Outlook .msg, PST (readpst)
run.py      the rehearsal: each message through live processing's own code, in a
            throwaway database, the clock moved message by message, nothing sent
report.py   what it found: a summary, or HTML, CSV or JSON
"""

from mailbot.replay.run import Replay, replay

__all__ = ["Replay", "replay"]
