"""The one exception type the CLI turns into a one-line error and a non-zero exit.

Raise `CgptError` for anything a user can fix (a missing file, a bad flag, a checkpoint that does not match):
the message names the file or field and what was expected. Bugs stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations


class CgptError(Exception):
    """A user-facing error: the message is printed as one line, and `cgpt` exits non-zero."""
