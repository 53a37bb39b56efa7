"""User-facing errors.

Anything raised as :class:`BenchError` is a problem with the user's input
(unknown name, malformed YAML, missing dataset root, ...).  The CLI prints it
as a single ``error: ...`` line and exits with status 2.
"""


class BenchError(Exception):
    """An error caused by user input; shown as one line, exit code 2."""


class ConfigError(BenchError):
    """A configuration value is missing, unknown or of the wrong type."""

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)
