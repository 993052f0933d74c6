"""The one exception type for bad user input: the CLI prints it on one line and exits with 2."""


class RegrowError(Exception):
    """A problem with what the user asked for (a value, a file, a combination of options)."""
