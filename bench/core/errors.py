"""User-facing errors and warnings.

Anything raised as :class:`BenchError` is a problem with the user's input
(unknown name, malformed YAML, missing dataset root, ...).  The CLI prints it
as a single ``bench: error: ...`` line and exits with status 2.  :func:`warn`
reports a problem the command works around (a corrupt file set aside)::

    warn(f"result file '{path}' is truncated; set aside as '{aside}'")
"""
import sys


class BenchError(Exception):
    """An error caused by user input; shown as one line, exit code 2."""


class ConfigError(BenchError):
    """A configuration value is missing, unknown or of the wrong type."""

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class MissingInput(ConfigError):
    """An option only the user can supply (a knowledge-base file): ``--method all`` leaves the method out."""


class Unfit(BenchError):
    """A method that cannot run on a protocol as configured (a ViT-only method on a ResNet backbone, classes
    it cannot name): ``--method all`` leaves it out with a note; naming it is this one error."""


def one_line(message: str) -> str:
    """``message`` with control characters (newlines, separators) escaped: it prints as one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def warn(message: str) -> None:
    """One ``bench: warning: ...`` line on stderr."""
    print(f"bench: warning: {one_line(message)}", file=sys.stderr)


def reason(err: BaseException) -> str:
    """The first line of an exception's message (or its type), for one-line reports."""
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
