"""Griffe extension: reST ``.. code-block:: lang`` in docstrings rendered as fenced code.

Some docstrings show a non-doctest example (YAML, or Python that needs a project around it)
as a reST code block, which Markdown would print as a literal ``.. code-block::`` line. This
turns each such block into a fenced block of the same language.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. code-block:: *(?P<lang>\S+)[ \t]*$")


def fence_code_blocks(text: str) -> str:
    """``text`` with each ``.. code-block:: lang`` and its indented body as a fenced block.

    Args:
        text: A docstring.

    Returns:
        The docstring with fenced blocks; unchanged when it has no directive.
    """
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index])
        if not match:
            out.append(lines[index])
            index += 1
            continue
        indent = match.group("indent")
        body: list[str] = []
        index += 1
        while index < len(lines) and (
            not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > len(indent)
        ):
            body.append(lines[index])
            index += 1
        while body and not body[-1].strip():
            body.pop()
        code = [line for line in body if line.strip()]
        margin = min((len(line) - len(line.lstrip()) for line in code), default=0)
        out.append(f"{indent}```{match.group('lang')}")
        out.extend(f"{indent}{line[margin:]}" if line.strip() else "" for line in body)
        out.append(f"{indent}```")
        if index < len(lines):
            out.append("")
    return "\n".join(out)


class FencedCodeBlocks(griffe.Extension):
    """Rewrite reST code-block directives of every docstring as fenced code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring."""
        if obj.docstring and ".. code-block::" in obj.docstring.value:
            obj.docstring.value = fence_code_blocks(obj.docstring.value)
