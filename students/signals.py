"""What the school record announces to the apps that may listen (it imports none of them).

`risky_operation` is sent just before an operation that changes much of a school's record at
once and that an administrator may want to undo as a whole: the backups app answers with a
named restore point in the WAL, so that "go back to just before the rollover" is one command.
Receivers must not raise; the operation goes on whatever they do.
"""

from __future__ import annotations

from django.dispatch import Signal

# kwargs: reason ("rollover", "import"), school_id, actor, description
risky_operation = Signal()
