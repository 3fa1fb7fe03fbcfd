"""Ledger keys: a request's canonical JSON and its sha256, never its row position."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from json.encoder import encode_basestring as _encode_str
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values always give equal text.

    Examples:
        >>> canonical_json({"b": 1, "a": [1, 2]})
        '{"a":[1,2],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_ROLE_CONTENT = frozenset({"role", "content"})


def canonical_messages(messages: list[dict[str, Any]]) -> str:
    """``canonical_json(messages)``, built directly for plain role/content messages.

    Hashing 100k rows spends most of its time here, and string-only messages need no
    general-purpose encoder.

    Examples:
        >>> msgs = [{"role": "user", "content": 'say "hi"'}]
        >>> canonical_messages(msgs) == canonical_json(msgs)
        True
    """
    parts = []
    for message in messages:
        content = message.get("content")
        if message.keys() != _ROLE_CONTENT or not isinstance(content, str):
            return canonical_json(messages)
        parts.append(
            f'{{"content":{_encode_str(content)},"role":{_encode_str(str(message["role"]))}}}'
        )
    return "[" + ",".join(parts) + "]"


def request_hash(body: Mapping[str, Any]) -> str:
    """The ledger key of a request: sha256 of its canonical JSON, never of row position.

    The messages are hashed after everything else, so a task can hash the part its rows share
    (model, schema, parameters) once and each row's messages on top (``LLMTask.request_key``).

    Examples:
        >>> request_hash({"model": "m"}) == request_hash({"model": "m"})
        True
    """
    rest = {k: v for k, v in body.items() if k != "messages"}
    digest = hashlib.sha256(canonical_json(rest).encode())
    digest.update(b"\n" + canonical_messages(body.get("messages", [])).encode())
    return digest.hexdigest()
