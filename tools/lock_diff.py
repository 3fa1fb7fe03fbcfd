"""Names what a fresh install would change against the lock: ``name: locked -> newest``.

Usage: ``python tools/lock_diff.py constraints.txt FREEZE_FILE`` where FREEZE_FILE is the
``pip freeze`` of an environment installed without the lock (``make test-latest`` makes one).
Prints one line per package whose version differs, is new or is gone; exits 0 either way.
"""

from __future__ import annotations

import sys
from pathlib import Path


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line (names compared case-insensitively)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def main(argv: list[str]) -> int:
    """Print the differences between the lock ``argv[0]`` and the freeze ``argv[1]``."""
    locked, latest = pins(Path(argv[0])), pins(Path(argv[1]))
    changes = [
        f"{name}: {locked.get(name, '(not locked)')} -> {latest.get(name, '(gone)')}"
        for name in sorted(locked.keys() | latest.keys())
        if locked.get(name) != latest.get(name)
    ]
    print(f"{len(changes)} package(s) differ from {argv[0]}:" if changes else "same as the lock")
    for change in changes:
        print(f"  {change}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
