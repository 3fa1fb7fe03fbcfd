"""Command line: ``python -m llm_assets {demo,ui,trace}``."""

from __future__ import annotations

import argparse
import sys
import warnings


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs a subcommand."""
    parser = argparse.ArgumentParser(prog="llm-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialize one partition of the example pipeline")
    demo.add_argument("--partition", default="2026-11-01", help="daily partition key")
    ui = sub.add_parser("ui", help="run the Dagster UI with the simulator")
    ui.add_argument("--port", type=int, default=3000)
    trace = sub.add_parser("trace", help="show where one generated row came from")
    trace.add_argument("asset", help="asset key, e.g. review_insights")
    trace.add_argument("--row", required=True, help="the row's id")
    trace.add_argument("--partition", default=None, help="partition key")
    trace.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    # Beta/preview notices about Dagster's own APIs are noise on a command line.
    warnings.filterwarnings("ignore", module="dagster")

    if args.command == "trace":
        return _trace(args.asset, args.row, args.partition, as_json=args.json)

    from llm_assets import demo as demo_module

    if args.command == "demo":
        return demo_module.run_demo(args.partition)
    if args.command == "ui":
        return demo_module.run_ui(args.port)
    parser.error(f"unknown command {args.command}")
    return 2


def _trace(asset: str, row: str, partition: str | None, *, as_json: bool) -> int:
    import json

    import dagster as dg

    from llm_assets.definitions import build_definitions
    from llm_assets.trace import format_trace, trace_row

    with dg.DagsterInstance.get() as instance:
        try:
            result = trace_row(build_definitions(), instance, asset, row, partition)
        except KeyError as exc:
            print(f"trace: {exc.args[0]}", file=sys.stderr)
            return 1
    print(json.dumps(result.to_dict(), default=str, indent=2) if as_json else format_trace(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
