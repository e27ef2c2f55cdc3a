"""mailbot: runs a council's shared mailbox as tracked cases with working-day deadlines."""

__version__ = "0.1.0"
