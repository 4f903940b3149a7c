"""Errors whose message names the problem and the fix; the CLI prints them without a traceback."""


class AtelierError(Exception):
    """A problem with the user's input or files, explained in plain words."""
