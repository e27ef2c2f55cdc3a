"""Bounces: reading delivery reports for the message they return (pure, no server)."""

from __future__ import annotations

from mailbot.bounces import read_bounce

OURS = "<176.2@council.example.gov.uk>"

POSTFIX = f"""\
Return-Path: <>
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
To: enquiries@council.example.gov.uk
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 4F2B1C0
Arrival-Date: Tue,  3 Nov 2026 10:00:04 +0000 (GMT)

Final-Recipient: rfc822; gone@example.com
Original-Recipient: rfc822;gone@example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.com
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected:
    User unknown in virtual mailbox table

--B
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Stafford Borough Council <enquiries@council.example.gov.uk>
To: gone@example.com
Subject: Re: Pothole [Ref: ENQ-2026-00001]
Message-ID:
 {OURS}
Auto-Submitted: auto-replied

--B--
"""

EXCHANGE = f"""\
From: Microsoft Outlook <postmaster@outlook.com>
To: enquiries@council.example.gov.uk
Subject: Undeliverable: Re: Pothole [Ref: ENQ-2026-00001]
Content-Type: multipart/report; report-type=delivery-status; boundary="X"

--X
Content-Type: text/plain

Delivery has failed to these recipients or groups.

--X
Content-Type: message/delivery-status

Reporting-MTA: dns;DB9PR01MB0000.eurprd01.prod.exchangelabs.com

Final-recipient: RFC822; jane@example.com
Action: failed
Status: 5.2.2
Diagnostic-code: smtp;554 5.2.2 mailbox full

--X
Content-Type: message/rfc822

From: Stafford Borough Council <enquiries@council.example.gov.uk>
To: jane@example.com
Message-ID: {OURS}
Subject: Re: Pothole

Dear Jane,
--X--
"""

DELAYED = POSTFIX.replace("Action: failed", "Action: delayed").replace(
    "Status: 5.1.1", "Status: 4.4.1"
)

QMAIL = f"""\
From: MAILER-DAEMON@old.example.net
To: enquiries@council.example.gov.uk
Subject: failure notice
Content-Type: text/plain

Hi. This is the qmail-send program at old.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.

<jane@old.example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

From: enquiries@council.example.gov.uk
Message-ID: {OURS}
Subject: Re: Pothole
"""

OUT_OF_OFFICE = f"""\
From: Jane Doe <jane@example.com>
To: enquiries@council.example.gov.uk
Subject: Automatic reply: Re: Pothole
In-Reply-To: {OURS}
Auto-Submitted: auto-replied
Content-Type: text/plain

I am away until Monday.
"""


def test_a_postfix_report_names_our_message_and_why_it_failed():
    bounce = read_bounce(POSTFIX.encode())
    assert bounce is not None
    assert bounce.message_ids == (OURS,)
    assert bounce.failed
    assert bounce.recipient == "gone@example.com"
    assert bounce.describe() == (
        "5.1.1 smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown "
        "in virtual mailbox table"
    )


def test_an_exchange_report_with_the_whole_message_returned():
    bounce = read_bounce(EXCHANGE.encode())
    assert bounce is not None
    assert (bounce.message_ids, bounce.failed, bounce.status) == ((OURS,), True, "5.2.2")


def test_a_delay_is_not_a_failure():
    bounce = read_bounce(DELAYED.encode())
    assert bounce is not None and not bounce.failed


def test_a_plain_text_bounce_counts_only_from_a_mail_system():
    assert read_bounce(QMAIL.encode()) is None
    bounce = read_bounce(QMAIL.encode(), from_mail_system=True)
    assert bounce is not None and bounce.message_ids == (OURS,) and bounce.failed


def test_an_out_of_office_reply_is_no_bounce_though_it_names_our_message():
    assert read_bounce(OUT_OF_OFFICE.encode(), from_mail_system=True) is None


def test_damaged_or_empty_reports_are_none():
    assert read_bounce(b"") is None
    assert read_bounce(b"Content-Type: multipart/report; boundary=x\n\n--x\n\xff\xfe--") is None
    assert read_bounce(POSTFIX.replace(OURS, "").encode()) is None  # names no message
