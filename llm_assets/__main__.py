"""Command line: ``python -m llm_assets {demo,ui,trace}``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs a subcommand."""
    parser = argparse.ArgumentParser(prog="llm-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialize one partition of the example pipeline")
    demo.add_argument("--partition", default="2026-11-01", help="daily partition key")
    ui = sub.add_parser("ui", help="run the Dagster UI with the simulator")
    ui.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)

    from llm_assets import demo as demo_module

    if args.command == "demo":
        return demo_module.run_demo(args.partition)
    if args.command == "ui":
        return demo_module.run_ui(args.port)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
