"""User-facing errors: one clear line, exit code 2 (bad input), never a traceback."""


class TunebenchError(Exception):
    """A problem with the user's input (file, key, value). The CLI prints it as one line and exits 2."""

    exit_code = 2
