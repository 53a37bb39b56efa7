"""The `bench` command: list, show, run, plan, status, leaderboard, report (and data, kb, new, bench).

One module per subcommand, each with ``add_parser(sub)`` and the command it runs: parse, call the
packages below, print.  Nothing imports this package (``bench = bench.cli:main``)::

    main(["run", "--protocol", "smoke", "--method", "coop"])   # exit code; errors as one line
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from bench import plugins
from bench.core.errors import BenchError, message_of, one_line

from . import data, kb, leaderboard, listing, new, plan, report, run, show, speed, status
from .common import Parser

SUBCOMMANDS = (listing, show, run, plan, status, data, kb, leaderboard, report, new, speed)  # in `bench --help` order


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__  # the package's version (pyproject reads it from here)

    parser = Parser(prog="bench", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed as one line
        return int(done.code or 0)
    try:
        plugins.use(getattr(args, "plugin", []))
        return args.func(args)
    except BenchError as err:
        print(f"bench: error: {one_line(message_of(err))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (bench data list | head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush is quiet too
        return 0
    except KeyboardInterrupt:
        print("bench: interrupted; finished results are saved and a re-run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
