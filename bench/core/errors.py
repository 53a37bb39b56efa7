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


LINE_LIMIT = 1000  # characters of an error or warning line: a user's value is quoted, never dumped


def shorten(text: str, limit: int = 300) -> str:
    """``text``, or its start and end around "...(N characters left out)..." when longer than ``limit``."""
    text = str(text)
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}...({len(text) - 2 * half:,} characters left out)...{text[-half:]}"


def one_line(message: str, limit: int = LINE_LIMIT) -> str:
    """``message`` with control characters (newlines, separators) escaped, so it prints as one line,
    and at most about ``limit`` characters long (a 60 MB value in a message is cut in the middle)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shorten(message, limit))


def message_of(err: BaseException) -> str:
    """An exception's own message.  One raised in a DataLoader worker comes back with the worker's whole
    traceback in its message ("Caught ... in DataLoader worker process 0. Original Traceback ..."): its
    last line is the message, without the exception's module path."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    name, sep, rest = last.partition(": ")
    return rest if sep and all(part.isidentifier() for part in name.split(".")) else last


def warn(message: str) -> None:
    """One ``bench: warning: ...`` line on stderr."""
    print(f"bench: warning: {one_line(message)}", file=sys.stderr)


def reason(err: BaseException) -> str:
    """The first line of an exception's message (or its type), for one-line reports."""
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
