"""The one exception type for bad user input: the CLI prints it on one line and exits with 2."""


class RegrowError(Exception):
    """A problem with what the user asked for (a value, a file, a combination of options)."""


class UnreadableFile(RegrowError):
    """A file regrow reads is missing, binary, not UTF-8, not valid YAML / JSON, or damaged: never a
    reason to carry on with part of the data (e.g. a report that leaves a law out)."""
