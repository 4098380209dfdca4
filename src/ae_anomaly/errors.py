"""The one exception type for problems a user can cause and fix.

Anything raised as ``UserError`` is shown by the CLI as a single sentence with
exit status 2 and no traceback; everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, missing data, a bad config value or an unusable output folder."""


class UndertrainedWarning(UserWarning):
    """A detector was fitted, but its training ended while clearly unfinished."""
