"""A code location holding the planner test assets, for the webserver test (see planner_support)."""

import dagster as dg

from tests.planner_support import build_defs

# Each step (a tool call among them) forked from a server that imported this location once.
FORKED_STEPS = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["tests.planner_location"]}}}
)

defs = build_defs(executor=FORKED_STEPS)
