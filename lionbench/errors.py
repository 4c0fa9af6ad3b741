"""The one exception type for bad user input.

Anything raised as `UserError` is reported as a single line on stderr with exit code 2 and no
traceback, before any run directory exists. Everything else is a bug or a runtime failure.
"""


class UserError(Exception):
    """Bad input: an unknown name, an invalid value, a missing path."""


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
