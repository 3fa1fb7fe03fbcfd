"""A code location holding the planner test assets, for the webserver test (see planner_support)."""

from tests.planner_support import build_defs

defs = build_defs()
