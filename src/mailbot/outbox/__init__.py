"""The outbox: every message mailbot sends is queued here first, then sent exactly once —
retried, backed off, never repeated.

Its parts, in the order a message meets them:

- `queue`: a Letter (what to send) queued once by its key; written when it is sent.
- `staff`: letters to the holders of a role or a case's officer, at opening time.
- `delivery`: the states a message passes through and every move between them.
- `sending`: one pass: claim what is due, write it, hand it over, record it.
- `transport`: SMTP: connect, sign in, hand over one message, read the answer.
- `pauses`: sending paused while the server refuses our account or address.
- `process`: the daemon's sending process that runs the passes.

Only the queue and the staff letters are imported from here: they are what the rest of
mailbot uses to send something. The sending side is the daemon's (`outbox.sending`,
`outbox.process`).
"""

from mailbot.outbox.queue import Letter, json_rows, new_message_id, queue
from mailbot.outbox.staff import notify_officer, notify_role, staff_send_time

__all__ = [
    "Letter",
    "json_rows",
    "new_message_id",
    "notify_officer",
    "notify_role",
    "queue",
    "staff_send_time",
]
