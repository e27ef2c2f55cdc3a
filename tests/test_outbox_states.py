"""The outbox's delivery states and the moves between them (outbox.delivery), without a
server: what the clerk may do to a message agrees with the table, and nothing that went
can be sent again by mailbot itself."""

from __future__ import annotations

from mailbot.outbox.delivery import MOVES, Status, may_move
from mailbot.unsent import NEEDS_ATTENTION, RESENDABLE


def test_every_state_has_its_moves_and_every_state_can_be_reached_from_pending():
    assert set(MOVES) == set(Status)
    reached, frontier = {Status.PENDING}, [Status.PENDING]
    while frontier:
        for after in MOVES[frontier.pop()]:
            if after not in reached:
                reached.add(after)
                frontier.append(after)
    assert reached == set(Status)


def test_what_the_clerk_may_resend_or_dismiss_are_moves_the_table_allows():
    assert all(may_move(status, Status.PENDING) for status in RESENDABLE)
    assert all(may_move(status, Status.DISMISSED) for status in NEEDS_ATTENTION)
    # Paused and sending messages are mailbot's own business, not the clerk's.
    assert Status.PAUSED not in RESENDABLE and Status.SENDING not in RESENDABLE


def test_a_message_that_went_or_may_have_gone_is_never_queued_again_by_itself():
    # Only the clerk moves an uncertain message on (unsent.resend); a sent one only bounces.
    assert MOVES[Status.SENT] == {Status.BOUNCED}
    assert not may_move(Status.SENT, Status.PENDING)
    assert not may_move(Status.WITHDRAWN, Status.PENDING)
    assert may_move(Status.SENDING, Status.UNCERTAIN)
    assert not may_move(Status.PENDING, Status.SENT)  # always claimed first
