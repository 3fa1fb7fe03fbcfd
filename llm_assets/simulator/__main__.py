"""Command line: ``python -m llm_assets.simulator [--port 8765] [--rpm 600] ...``.

Every ``SimulatorConfig`` knob has a flag (``latency_ms`` -> ``--latency-ms``); ``--api-key``
may repeat, ``--model-context-window MODEL=TOKENS`` may repeat, and ``--config-json`` takes a
whole config as JSON (``-`` reads it from stdin; explicit flags still win).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from llm_assets.simulator.app import SimulatorApp
from llm_assets.simulator.config import SimulatorConfig
from llm_assets.simulator.server import bind_socket, build_uvicorn_server, url_for

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

    Examples:
        ``python -m llm_assets.simulator --port 8765 --rpm 600 --window-s 6 --fault-503 0.02``
    """
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    sock = bind_socket(args.host, args.port)
    url = url_for(sock)
    print(
        f"llm-assets-simulator (offline simulator, placeholder outputs, not a model) "
        f"listening on {url} ; OpenAI base_url {url}/v1",
        flush=True,
    )
    build_uvicorn_server(SimulatorApp(config)).run(sockets=[sock])


if __name__ == "__main__":
    main()
