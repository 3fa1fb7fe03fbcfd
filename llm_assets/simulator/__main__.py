"""Command line: ``python -m llm_assets.simulator [--port 8765] [--rpm 600] ...``.

Every ``SimulatorConfig`` knob has a flag (``latency_ms`` -> ``--latency-ms``); ``--api-key``
may repeat, ``--model-context-window MODEL=TOKENS`` may repeat, and ``--config-json`` takes a
whole config as JSON (``-`` reads it from stdin; explicit flags still win).

If it cannot listen (the port is taken, the host is unknown) it prints one sentence to stderr
and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Sequence
from typing import Any, NoReturn

from llm_assets.simulator.app import SimulatorApp
from llm_assets.simulator.binding import CLI_LISTEN_FAILED_STATUS, PortInUseError, bind_socket
from llm_assets.simulator.config import SimulatorConfig
from llm_assets.simulator.server import build_uvicorn_server, url_for

_SPECIAL_FLAGS = {"api_keys", "context_windows"}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser, one flag per ``SimulatorConfig`` knob."""
    parser = argparse.ArgumentParser(
        prog="python -m llm_assets.simulator",
        description=(
            "Offline OpenAI-compatible simulator. Answers are deterministic placeholders, "
            "not model output."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    parser.add_argument("--port", type=int, default=8765, help="Port; 0 picks a free one.")
    parser.add_argument("--config-json", help="Whole config as JSON, or '-' to read it from stdin.")
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        help="Accepted bearer token (repeatable); none given accepts any non-empty token.",
    )
    parser.add_argument(
        "--model-context-window",
        dest="context_windows",
        action="append",
        metavar="MODEL=TOKENS",
        help="Context window override for one model (repeatable).",
    )
    for name, field in SimulatorConfig.model_fields.items():
        if name in _SPECIAL_FLAGS:
            continue
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=field.description
            )
        elif typing.get_origin(field.annotation) is list:
            # --accepted-params top_k --accepted-params min_p (or --accepted-params top_k min_p)
            (item,) = typing.get_args(field.annotation)
            parser.add_argument(
                flag, type=item, nargs="+", action="extend", default=None, help=field.description
            )
        else:
            kind: Any = field.annotation
            parser.add_argument(flag, type=kind, default=None, help=field.description)
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Merge ``--config-json`` with the explicit flags into a validated config.

    Args:
        args: Parsed command line.

    Returns:
        The config to serve with.
    """
    knobs: dict[str, Any] = {}
    if args.config_json:
        text = sys.stdin.read() if args.config_json == "-" else args.config_json
        knobs.update(json.loads(text))
    for name in SimulatorConfig.model_fields:
        value = getattr(args, name)
        if value is None:
            continue
        if name == "context_windows":
            value = {
                model: int(tokens) for model, _, tokens in (item.partition("=") for item in value)
            }
        knobs[name] = value
    return SimulatorConfig.model_validate(knobs)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until interrupted.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Raises:
        SystemExit: With status 2 and one sentence on stderr if it cannot listen.

    Examples:
        ``python -m llm_assets.simulator --port 8765 --rpm 600 --window-s 6 --fault-503 0.02``
    """
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    try:
        sock = bind_socket(args.host, args.port)
    except PortInUseError as exc:
        _fail(str(exc))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _fail(f"cannot listen on {args.host} port {args.port} ({reason}): check --host and --port")
    url = url_for(sock)
    print(
        f"llm-assets-simulator (offline simulator, placeholder outputs, not a model) "
        f"listening on {url} ; OpenAI base_url {url}/v1",
        flush=True,
    )
    build_uvicorn_server(SimulatorApp(config)).run(sockets=[sock])


def _fail(sentence: str) -> NoReturn:
    print(f"llm-assets-simulator: {sentence}", file=sys.stderr, flush=True)
    raise SystemExit(CLI_LISTEN_FAILED_STATUS)


if __name__ == "__main__":
    main()
