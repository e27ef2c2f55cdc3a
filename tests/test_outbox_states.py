"""The outbox's delivery states and the moves between them (outbox.delivery), without a
server: what the clerk may do to a message agrees with the table, and nothing that went
can be sent again by mailbot itself."""

from __future__ import annotations

from mailbot.outbox.delivery import BEGINS, MOVES, may_move
from mailbot.store import OutboxStatus
from mailbot.unsent import NEEDS_ATTENTION, RESENDABLE


def test_every_state_has_its_moves_and_every_state_can_be_reached_from_a_beginning():
    assert set(MOVES) == set(OutboxStatus)
    reached, frontier = set(BEGINS), list(BEGINS)
    while frontier:
        for after in MOVES[frontier.pop()]:
            if after not in reached:
                reached.add(after)
                frontier.append(after)
    assert reached == set(OutboxStatus)


def test_what_the_clerk_may_resend_or_dismiss_are_moves_the_table_allows():
    assert all(may_move(status, OutboxStatus.PENDING) for status in RESENDABLE)
    assert all(may_move(status, OutboxStatus.DISMISSED) for status in NEEDS_ATTENTION)
    # Paused and sending messages are mailbot's own business, not the clerk's.
    assert OutboxStatus.PAUSED not in RESENDABLE and OutboxStatus.SENDING not in RESENDABLE


def test_a_message_that_went_or_may_have_gone_is_never_queued_again_by_itself():
    # Only the clerk moves an uncertain message on (unsent.resend); a sent one only bounces.
    assert MOVES[OutboxStatus.SENT] == {OutboxStatus.BOUNCED}
    assert not may_move(OutboxStatus.SENT, OutboxStatus.PENDING)
    assert not may_move(OutboxStatus.WITHDRAWN, OutboxStatus.PENDING)
    assert may_move(OutboxStatus.SENDING, OutboxStatus.UNCERTAIN)
    assert not may_move(OutboxStatus.PENDING, OutboxStatus.SENT)  # always claimed first
    assert MOVES[OutboxStatus.SHADOW] == set()  # kept in shadow mode: never sent, even later
