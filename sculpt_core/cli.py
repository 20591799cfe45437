"""Command-line interface: ``python -m sculpt_core --help``.

Every command prints one JSON line of figures on stdout (progress bars go to stderr) and exits 2 with
a one-line ``error:`` message on bad input. This module builds the top-level parser and the ``zoo list``
command; each registered domain (:data:`sculpt_core.domains.DOMAINS`) adds its own sub-commands.
"""

from __future__ import annotations

import argparse
import sys

from sculpt_core.core.cli import emit
from sculpt_core.domains import DOMAINS
from sculpt_core.errors import SculptError


def cmd_zoo_list(args: argparse.Namespace) -> dict:
    from sculpt_core.core.zoo import read_manifest

    return read_manifest()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sculpt_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="domain", required=True)
    groups = {key: sub.add_parser(key, help=d.help).add_subparsers(dest="cmd", required=True) for key, d in DOMAINS.items()}
    zoo = sub.add_parser("zoo", help="shipped pre-trained models").add_subparsers(dest="cmd", required=True)
    p = zoo.add_parser("list", help="print the manifest")
    p.set_defaults(func=cmd_zoo_list)
    for key, domain in DOMAINS.items():
        domain.module("cli").register(groups[key], zoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        emit(args.func(args))
    except SculptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
