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


class MissingData(BenchError):
    """Data that cannot be read, each problem named (a protocol's training set and several evaluation
    datasets, or the datasets of a whole table): one line naming them all, not the first alone."""

    def __init__(self, problems: list):
        self.problems = list(dict.fromkeys(problems))
        super().__init__(self.problems[0] if len(self.problems) == 1 else several_missing(self.problems))


def several_missing(problems: list) -> str:
    """One line naming all the data that cannot be read, each by its error's first clause (what is
    missing where), the folder they share said once, and what to do next."""
    import os
    import re

    clauses = [message.split("; ", 1)[0] for message in problems]
    paths = [path for clause in clauses for path in re.findall(r"'(/[^']+)'", clause)]
    common = os.path.commonpath(paths) if len(paths) > 1 else ""
    under = f" (under '{common}')" if len(common) > 1 else ""
    named = ", ".join(re.sub(r"'(/[^']+)'", lambda m: repr(os.path.relpath(m[1], common)), clause) if under
                      else clause for clause in clauses)
    return (f"{len(problems)} datasets cannot be read{under}: {named}; `bench data list` shows where "
            "each dataset is looked for and where to get it (or give --data-root)")


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
