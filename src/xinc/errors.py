"""One exception type for user-facing problems: the CLI prints its message as one line, exit 2."""


class XincError(Exception):
    """Bad input or an impossible request; the message says which file, what is wrong, what to do."""
