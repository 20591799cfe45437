"""Command-line interface: ``python -m sculpt_core --help``.

Every command prints one JSON line of figures on stdout (progress bars go to stderr) and exits 2 with
a one-line ``error:`` message on bad input. This module builds the top-level parser and the ``zoo list``
command; each registered domain (:data:`sculpt_core.domains.DOMAINS`) adds its own sub-commands.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from sculpt_core.core.cli import emit
from sculpt_core.core.io import check_output_path
from sculpt_core.domains import DOMAINS
from sculpt_core.errors import SculptError


def cmd_zoo_list(args: argparse.Namespace) -> dict:
    from sculpt_core.core.zoo import read_manifest

    return read_manifest()


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are a SculptError (one ``error:`` line, exit 2) instead of a usage block;
    sub-command parsers are of the same class."""

    def error(self, message: str):
        # "argument --n: value must be ≥ 1" (an int_arg refusal) reads "--n must be ≥ 1"
        message = re.sub(r"^argument ([^:]+): value ", r"\1 ", message)
        raise SculptError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m sculpt_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="domain", required=True)
    groups = {key: sub.add_parser(key, help=d.help).add_subparsers(dest="cmd", required=True) for key, d in DOMAINS.items()}
    zoo = sub.add_parser("zoo", help="shipped pre-trained models").add_subparsers(dest="cmd", required=True)
    p = zoo.add_parser("list", help="print the manifest")
    p.set_defaults(func=cmd_zoo_list)
    for key, domain in DOMAINS.items():
        domain.module("cli").register(groups[key], zoo)
    return parser


#: Characters ``str.splitlines`` breaks at: in an error message (which may quote a user's text, such as a CSV
#: header) they are shown escaped, so the message stays one line.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(text: str) -> str:
    """``text`` with every line-break character written as its escape (``\\n``, ``\\x1e``, …)."""
    return "".join(c.encode("unicode_escape").decode("ascii") if c in _LINE_BREAKS else c for c in text.strip())


#: Exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run one command: 0 with one JSON line on stdout; 2 with one ``error:`` line on stderr for bad input
    (including a bad ``--out``, checked before any work); 130 with one line when interrupted by Ctrl-C (every
    output is written atomically at the end, so nothing partial is left); 1 with one line for an internal
    error (``SCULPT_DEBUG=1`` shows its traceback)."""
    try:
        args = build_parser().parse_args(argv)
        out = getattr(args, "out", None)
        if isinstance(out, str):
            check_output_path(out)
        emit(args.func(args))
    except SculptError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); no partial output file was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:
        if os.environ.get("SCULPT_DEBUG") == "1":
            raise
        print(f"error: internal error ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
              "please report it with the command (SCULPT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    return 0
