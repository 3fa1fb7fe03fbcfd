"""Command line of the example: ``python -m reviews_example demo [--partition DAY]``.

``make demo`` runs it. The UI and ``trace`` are the library's own commands, given this code
location: ``python -m llm_assets ui -m reviews_example.definitions`` and ``python -m llm_assets
trace review_insights -m reviews_example.definitions --partition DAY --row ID``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs the demo.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(prog="reviews_example", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialize one partition of the example pipeline")
    demo.add_argument("--partition", default="2026-11-01", help="daily partition key")
    args = parser.parse_args(argv)
    from reviews_example.demo import run_demo

    return run_demo(args.partition)


if __name__ == "__main__":
    sys.exit(main())
