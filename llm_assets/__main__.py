"""Command line: ``python -m llm_assets {ui,trace,estimate,experiment,review}``.

``ui`` serves a code location in the Dagster UI beside the simulator (``llm_assets.ui``).
``estimate`` forecasts what materializing partitions of an ``llm_asset`` would send and cost,
sending nothing (``llm_assets.forecast``). ``trace`` and ``estimate`` find their code and
``trace`` its Dagster instance the way the ``dagster`` CLI does:

- code: ``-w workspace.yaml`` (``--location NAME`` when it lists several), ``-f file.py``,
  ``-m module`` or ``--package-name``, with ``-a`` naming the ``Definitions`` attribute; with
  none of them, ``./workspace.yaml``, else the ``[tool.dagster]`` block of ``./pyproject.toml``.
  The code is imported in this process with Dagster's own loaders (no code server).
- instance: ``$DAGSTER_HOME``; if unset, ``./.dagster_home`` (what ``make demo`` and
  ``make ui`` use), said on stderr.

Usage mistakes (no instance, unknown asset, partition or row) print one line naming what
exists and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

# Already imported by the llm_assets package itself, so it costs nothing here.
import dagster as dg

from llm_assets.commands import (
    add_estimate_parser,
    add_experiment_parser,
    run_estimate,
    run_experiment_command,
)
from llm_assets.resources.errors import UserError
from llm_assets.review.commands import add_review_parser, run_review

USAGE_ERROR = 2
UI_DESCRIPTION = (
    "The Dagster UI and daemon (dagster dev) on a code location, with the simulator beside them "
    "(its URL exported as LLM_ASSETS_BASE_URL); the instance is $DAGSTER_HOME, else "
    "./.dagster_home. Without -w, -m or -f: ./workspace.yaml, else the [tool.dagster] block of "
    "./pyproject.toml. The review page of the location's review gates is served beside them "
    "(--review-port). Ctrl-C or SIGTERM stops every process it started."
)
DEMO_MOVED = (
    "the demo is an example project, not part of the library: in the repository, `make demo` "
    "(examples/reviews, `python -m reviews_example demo`)"
)
NO_INSTANCE = (
    "DAGSTER_HOME is not set and ./.dagster_home does not exist: "
    "export DAGSTER_HOME=<folder of the instance that materialized the asset>"
)


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs a subcommand.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit status: 0 on success, 2 for a usage mistake.

    Examples:
        What ``python -m llm_assets trace ...`` runs, after ``make demo``:

        .. code-block:: python

            from llm_assets.__main__ import main

            main(["trace", "review_insights", "-m", "reviews_example.definitions",
                  "--partition", "2026-11-01", "--row", "2026-11-01-0000"])
    """
    parser = argparse.ArgumentParser(prog="llm-assets", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ui = sub.add_parser(
        "ui",
        help="run the Dagster UI and daemon on a code location, with the simulator",
        description=UI_DESCRIPTION,
    )
    ui.add_argument("--port", type=int, default=3000, help="port of the Dagster UI")
    ui.add_argument(
        "--simulator-port", type=int, default=8765, help="port of the simulator (0: any free one)"
    )
    ui.add_argument(
        "--review-port", type=int, default=3100, help="port of the review page (0: any free one)"
    )
    group = ui.add_argument_group("code location (as for dagster dev)")
    served = group.add_mutually_exclusive_group()
    served.add_argument("-w", "--workspace", metavar="YAML", help="a workspace.yaml")
    served.add_argument("-m", "--module-name", metavar="MODULE", help="an importable module")
    served.add_argument("-f", "--python-file", metavar="FILE", help="a Python file")
    sub.add_parser("demo", help="says where the demo is (not in the library)")
    trace = sub.add_parser(
        "trace",
        help="show where one generated row came from",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trace.add_argument("asset", help="asset key, e.g. review_insights (a/b with a prefix)")
    trace.add_argument("--row", required=True, help="the row's id (the task's id_column)")
    trace.add_argument("--partition", default=None, help="partition key (a|b: multi-partitions)")
    trace.add_argument("--json", action="store_true", help="print JSON")
    _add_code_location_options(trace)
    add_estimate_parser(sub, _add_code_location_options)
    add_experiment_parser(sub, _add_code_location_options)
    add_review_parser(sub, _add_code_location_options)
    # `demo --partition ...` as it used to be typed still gets the pointer, not a usage error.
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "demo":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "trace":
            return _trace(args)
        if args.command == "estimate":
            return run_estimate(args, load_definitions)
        if args.command == "experiment":
            return run_experiment_command(args, load_definitions)
        if args.command == "review":
            return run_review(args, load_definitions)
        if args.command == "demo":
            raise UserError(DEMO_MOVED)
        from llm_assets.ui import code_location, run_ui

        location = code_location(args.workspace, args.module_name, args.python_file)
        return run_ui(
            port=args.port,
            simulator_port=args.simulator_port,
            location=location,
            review_port=args.review_port,
        )
    except UserError as exc:
        print(f"{parser.prog} {args.command}: {exc}", file=sys.stderr)
        return USAGE_ERROR


def _add_code_location_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("code location (as for the dagster CLI)")
    target = group.add_mutually_exclusive_group()
    target.add_argument("-w", "--workspace", metavar="YAML", help="a workspace.yaml")
    target.add_argument("-f", "--python-file", metavar="FILE", help="a Python file")
    target.add_argument("-m", "--module-name", metavar="MODULE", help="an importable module")
    target.add_argument("--package-name", metavar="PACKAGE", help="an importable package")
    group.add_argument(
        "-a", "--attribute", help="the Definitions attribute (default: the one in the module)"
    )
    group.add_argument(
        "-d", "--working-directory", metavar="DIR", help="put on sys.path for -f/-m (default: .)"
    )
    group.add_argument("--location", metavar="NAME", help="the workspace's location to use")


def find_dagster_home() -> Path:
    """The instance folder: ``$DAGSTER_HOME``, else ``./.dagster_home``; exports the choice.

    The choice is exported because code locations read ``DAGSTER_HOME`` while they are
    imported (the example keeps its ledger there), so it must be set before loading code.

    Returns:
        The absolute path of the instance folder.

    Raises:
        UserError: Neither is usable; the message says what to export.
    """
    configured = os.environ.get("DAGSTER_HOME")
    if configured:
        home = Path(configured).expanduser().absolute()
        if not home.is_dir():
            raise UserError(
                f"DAGSTER_HOME={configured} is not a folder: export DAGSTER_HOME=<folder of the "
                "instance that materialized the asset>"
            )
    else:
        home = Path.cwd() / ".dagster_home"
        if not home.is_dir():
            raise UserError(NO_INSTANCE)
        print(f"DAGSTER_HOME is not set; using the instance in {home}", file=sys.stderr)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _location_origins(args: argparse.Namespace) -> list[Any]:
    """Dagster's code location origins for the options, as ``dagster`` itself resolves them."""
    from dagster._cli.utils import has_pyproject_dagster_block
    from dagster._core.workspace import load_target as targets

    working_directory = args.working_directory or os.getcwd()
    named = [
        (kind, value)
        for kind, value in (
            (targets.PythonFileTarget, args.python_file),
            (targets.ModuleTarget, args.module_name),
            (targets.PackageTarget, args.package_name),
        )
        if value
    ]
    if (args.attribute or args.working_directory) and not named:
        raise UserError(
            "-a and -d go with -f, -m or --package-name; in a workspace file, set "
            "`attribute:` or `working_directory:` on the location instead"
        )
    target: Any
    if named:
        ((kind, value),) = named
        if args.python_file and not Path(args.python_file).is_file():
            raise UserError(f"python file {args.python_file} does not exist")
        target = kind(value, args.attribute, working_directory, None)
    else:
        workspace = args.workspace or next(
            (name for name in ("workspace.yaml", "workspace.yml") if Path(name).is_file()), None
        )
        if workspace is not None:
            if not Path(workspace).is_file():
                raise UserError(f"workspace file {workspace} does not exist")
            target = targets.WorkspaceFileTarget(paths=[workspace])
        elif has_pyproject_dagster_block("pyproject.toml"):
            target = targets.PyProjectFileTarget("pyproject.toml")
        else:
            raise UserError(
                f"no code location given and neither workspace.yaml nor a [tool.dagster] "
                f"block in pyproject.toml in {os.getcwd()}: pass -m MODULE, -f FILE or -w YAML"
            )
    try:
        return list(target.create_origins())
    except Exception as exc:
        raise UserError(f"cannot read the code location: {exc}") from None


def load_definitions(args: argparse.Namespace) -> dg.Definitions:
    """Imports the code location the options name and returns its ``Definitions``.

    Args:
        args: Parsed ``trace`` options (``workspace``, ``python_file``, ``module_name``,
            ``package_name``, ``attribute``, ``working_directory``, ``location``).

    Returns:
        The location's ``Definitions`` (a ``@dg.definitions`` function is called).

    Raises:
        UserError: No such location, several without ``--location``, a gRPC server
            location, an import error, or no ``Definitions`` object.
    """
    from dagster._core.errors import DagsterImportError
    from dagster._grpc.utils import get_loadable_targets
    from dagster.components.definitions import LazyDefinitions

    origins = _location_origins(args)
    names = [origin.location_name for origin in origins]
    if args.location is not None:
        origins = [origin for origin in origins if origin.location_name == args.location]
        if not origins:
            raise UserError(
                f"no code location '{args.location}'; the workspace has: {', '.join(names)}"
            )
    if not origins:
        raise UserError("the workspace lists no code location")
    if len(origins) > 1:
        raise UserError(
            f"the workspace has {len(origins)} code locations ({', '.join(names)}); "
            "pick one with --location NAME"
        )
    origin = origins[0]
    loadable = getattr(origin, "loadable_target_origin", None)
    if loadable is None:
        raise UserError(
            f"code location '{origin.location_name}' is a gRPC server; trace imports code "
            "itself: pass the same code with -m MODULE or -f FILE"
        )
    if loadable.executable_path and Path(loadable.executable_path) != Path(sys.executable):
        print(
            f"note: location '{origin.location_name}' runs on {loadable.executable_path}; "
            f"trace imports it with {sys.executable}",
            file=sys.stderr,
        )
    try:
        found = get_loadable_targets(
            python_file=loadable.python_file,
            module_name=loadable.module_name,
            package_name=loadable.package_name,
            autoload_defs_module_name=loadable.autoload_defs_module_name,
            working_directory=loadable.working_directory,
            attribute=loadable.attribute,
            resolve_lazy_defs=False,
        )
    except (DagsterImportError, dg.DagsterInvariantViolationError) as exc:
        raise UserError(f"cannot load code location '{origin.location_name}': {exc}") from None
    defs = found[0].target_definition
    if isinstance(defs, LazyDefinitions):
        defs = defs()
    if not isinstance(defs, dg.Definitions):
        raise UserError(
            f"code location '{origin.location_name}' holds a {type(defs).__name__}, not a "
            "dg.Definitions; point -a at its Definitions object"
        )
    return defs


def _trace(args: argparse.Namespace) -> int:
    import json

    from llm_assets.trace import format_trace, trace_row

    home = find_dagster_home()
    defs = load_definitions(args)
    try:
        instance = dg.DagsterInstance.get()
    except dg.DagsterError as exc:
        raise UserError(f"cannot open the Dagster instance in {home}: {exc}") from None
    with instance:
        try:
            result = trace_row(defs, instance, args.asset, args.row, args.partition)
        except KeyError as exc:
            raise UserError(exc.args[0]) from None
    print(
        json.dumps(result.to_dict(), default=str, indent=2) if args.json else format_trace(result)
    )
    if result.materialized_by_run_status is None:
        print(
            f"note: run {result.materialized_by_run_id} is not in the instance at {home}; "
            "is DAGSTER_HOME the instance that materialized the asset?",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
