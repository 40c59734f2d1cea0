"""One exception type for every user-facing failure.

The CLI prints ``DinbenchError`` messages as one line (no traceback) and exits with status 2.
Messages say what was wrong and what to do about it.
"""


class DinbenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class Interrupted(DinbenchError):
    """Ctrl-C during a command that writes (import, download); the message says what was kept.
    The CLI exits with 130, as a shell does for SIGINT."""

    exit_code = 130
