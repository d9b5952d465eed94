"""The `advisor` command line: `analyze` (the engine, no service needed) and the service commands."""

from __future__ import annotations

import argparse
import sys

from redundancy import cli as engine_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advisor", description="Redundancy Advisor")
    sub = parser.add_subparsers(dest="command", required=True)
    analyze = sub.add_parser("analyze", help="Run one analysis locally and print the advice.")
    engine_cli.add_analyze_arguments(analyze)
    analyze.set_defaults(func=engine_cli.run_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
